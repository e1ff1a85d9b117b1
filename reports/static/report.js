// The report page's counts, sent to our own server (no tracker): the recap started and
// watched to its end, and the Book button pressed. Each is one small form post that the
// browser delivers even as the page is left (navigator.sendBeacon). Without this script
// the page works the same; only these three counts are not taken.
(function () {
  "use strict";
  var page = document.querySelector("[data-events]");
  if (!page || !navigator.sendBeacon) { return; }
  var url = page.getAttribute("data-events");
  var sent = {};
  function count(event, once) {
    if (once && sent[event]) { return; }
    sent[event] = true;
    var body = new URLSearchParams();
    body.set("event", event);
    navigator.sendBeacon(url, body);
  }
  Array.prototype.forEach.call(document.querySelectorAll("video[data-recap]"), function (video) {
    video.addEventListener("play", function () { count("video_started", true); });
    video.addEventListener("ended", function () { count("video_ended", true); });
  });
  Array.prototype.forEach.call(document.querySelectorAll("a[data-book]"), function (link) {
    link.addEventListener("click", function () { count("book_pressed", false); });
  });
}());
