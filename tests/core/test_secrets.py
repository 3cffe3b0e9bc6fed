from orchestrator.secrets import Redactor


def test_secret_values_are_masked_in_text_and_data():
    r = Redactor({"secrets": {"token": "s3cr3t-token", "db": {"password": "hunter22"}}, "region": "eu"})
    assert r.text("auth failed for s3cr3t-token") == "auth failed for ***"
    assert r.data({"headers": {"Authorization": "Bearer s3cr3t-token"}, "n": 1, "list": ["hunter22"]}) == \
        {"headers": {"Authorization": "Bearer ***"}, "n": 1, "list": ["***"]}
    assert r.data({"region": "eu"}) == {"region": "eu"}


def test_no_secrets_configured_changes_nothing():
    r = Redactor({"region": "eu"})
    assert not r and r.text("eu") == "eu" and r.data([1, "x"]) == [1, "x"]
