// The booking desk: when a time is picked, the staff list shows at once who is free then
// (each time option lists them in data-free; the words come from the page). Without this
// script the form's 查看这个时间谁有空 button asks the server the same.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  function mark(timeSelect) {
    var staff = document.getElementById(timeSelect.getAttribute("data-staff"));
    if (!staff) { return; }
    var option = timeSelect.options[timeSelect.selectedIndex];
    var ids = option && option.value ? (option.getAttribute("data-free") || "").split(",") : null;
    Array.prototype.forEach.call(staff.options, function (choice) {
      if (!choice.value) { return; }
      var name = choice.getAttribute("data-name") || choice.textContent;
      if (ids === null) {
        choice.disabled = false;
        choice.textContent = name;
      } else if (ids.indexOf(choice.value) >= 0) {
        choice.disabled = false;
        choice.textContent = name + staff.getAttribute("data-free-label");
      } else {
        choice.disabled = true;
        choice.textContent = name + staff.getAttribute("data-busy-label");
        if (choice.selected) { staff.value = ""; }
      }
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("select[data-staff]"), function (s) {
    s.addEventListener("change", function () { mark(s); });
  });
})();
