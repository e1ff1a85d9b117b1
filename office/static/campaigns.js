// The campaign editor: the texts are checked as they are typed (the form is posted to the
// lint fragment and its findings replace #lint), and 应用修改 puts a finding's corrected
// text into its field. Without this script the 检查 and 应用修改 buttons post the form.
(function () {
  "use strict";
  var form = document.getElementById("editor");
  if (!form) { return; }
  var target = document.getElementById("lint");
  var url = form.getAttribute("data-lint");
  var audience = document.getElementById("audience");
  var audienceUrl = form.getAttribute("data-audience");
  var timer = null;
  var round = 0;

  function fill(address, element, mine) {
    fetch(address, { method: "POST", body: new FormData(form), credentials: "same-origin",
                     headers: { "Accept": "text/html" } })
      .then(function (answer) {
        if (answer.status === 401 || answer.status === 403) { window.location.reload(); return null; }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html !== null && mine === round) { element.innerHTML = html; }
      })
      .catch(function () { /* offline for a moment: 检查 still works */ });
  }

  function check() {
    var mine = ++round;
    fill(url, target, mine);
    if (audience && audienceUrl) { fill(audienceUrl, audience, mine); }
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(check, 400);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  target.addEventListener("click", function (event) {
    var button = event.target.closest("button.apply");
    if (!button) { return; }
    event.preventDefault();
    var field = document.getElementById(button.getAttribute("data-part") === "mms" ? "mms_body" : "template");
    field.value = button.getAttribute("data-result");
    field.focus();
    check();
  });
})();
