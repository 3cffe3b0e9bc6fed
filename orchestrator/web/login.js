// The sign-in page: carries `next` (where to go back to) into the form and says when the token was wrong.
"use strict";

(() => {
  const query = new URLSearchParams(location.search);
  document.getElementById("login-next").value = query.get("next") || "/";
  document.getElementById("login-error").hidden = query.get("wrong") !== "1";
})();
