/*
 * 回访 · the staff visit page's glue (ES2017 at most, no framework): the capture forms hand
 * the chosen files to the upload queue (uploads.js), the queue's items are drawn with their
 * state, reason and a retry button, and what each area still needs is refreshed as files
 * are done. Without this script the forms still post one file each.
 */
(function () {
  "use strict";
  var body = document.body;
  body.className += " enhanced";
  Array.prototype.forEach.call(document.querySelectorAll(".js-only"), function (el) {
    el.hidden = false;
  });
  Array.prototype.forEach.call(document.querySelectorAll("input[data-pick=gallery]"),
    function (input) { input.multiple = true; });

  var token = (document.querySelector("meta[name=csrf-token]") || {}).content || "";
  var first = document.querySelector("form.capture");
  if (!first || !window.HuifangUploads) { return; }
  var visitId = Number(first.getAttribute("data-visit"));
  var list = document.getElementById("queue-list");
  var empty = document.getElementById("queue-empty");
  var summary = document.getElementById("queue-summary");
  var PHASES = {before: "服务前", during: "服务中", after: "服务后", staff_report: "日报照片"};
  var shown = {};

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function mb(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

  // The capture form a file was chosen in: its state shows where it was taken.
  function formFor(phase, area) {
    var forms = document.querySelectorAll("form.capture");
    for (var i = 0; i < forms.length; i++) {
      if (forms[i].getAttribute("data-phase") === phase &&
          forms[i].getAttribute("data-area") === (area || "")) { return forms[i]; }
    }
    return null;
  }

  // The queue's summary: how many files are still on their way, refused, done.
  function summarize() {
    var counts = {waiting: 0, failed: 0, done: 0};
    Object.keys(shown).forEach(function (id) {
      var state = shown[id].getAttribute("data-state");
      if (state === "failed") { counts.failed += 1; }
      else if (state === "done") { counts.done += 1; }
      else { counts.waiting += 1; }
    });
    var total = counts.waiting + counts.failed + counts.done;
    empty.hidden = total > 0;
    summary.hidden = total === 0;
    var parts = [];
    if (counts.waiting) { parts.push("还有 " + counts.waiting + " 个文件在上传或处理"); }
    if (counts.failed) { parts.push(counts.failed + " 个失败，请在照片下方点重试"); }
    if (counts.done) { parts.push(counts.done + " 个已完成"); }
    summary.textContent = parts.join("；");
    summary.className = counts.failed ? "summary bad" : (counts.waiting ? "summary" : "summary ok");
  }

  function refreshProgress() {
    var request = new XMLHttpRequest();
    request.open("GET", "/staff/visits/" + visitId + "/progress", true);
    request.onload = function () {
      if (request.status !== 200) { return; }
      var progress = JSON.parse(request.responseText);
      progress.areas.forEach(function (area) {
        var badge = document.querySelector('[data-missing="' + (area.area || "") + '"]');
        if (!badge) { return; }
        badge.textContent = area.missing.length ? "缺" + area.missing.join("、") : "齐全";
        badge.className = "missing " + (area.missing.length ? "todo" : "ok");
      });
      var finish = document.getElementById("finish");
      if (finish) {
        finish.querySelector("button").disabled = !progress.can_finish;
        var why = document.getElementById("finish-why");
        why.textContent = progress.why;
        why.hidden = !progress.why;
      }
    };
    request.send(null);
  }

  function draw(item) {
    if (item.visitId !== visitId) { return; }
    var row = shown[item.id];
    if (!row) {
      row = shown[item.id] = el("li", "item");
      row.setAttribute("data-item", item.id);
      var form = formFor(item.phase, item.area);
      (form ? form.querySelector(".pending") : list).appendChild(row);
    }
    row.className = "item " + item.state;
    row.setAttribute("data-state", item.state);
    while (row.firstChild) { row.removeChild(row.firstChild); }
    var media = item.media;
    if (item.state === "done" && media && media.thumb) {
      var link = el("a");
      link.href = media.display || media.thumb;
      link.target = "_blank";
      link.rel = "noopener";
      var img = el("img", "thumb");
      img.src = media.thumb;
      img.alt = (item.area || "") + " " + (PHASES[item.phase] || "") + " 已加水印";
      link.appendChild(img);
      row.appendChild(link);
    }
    var text = el("div", "text");
    text.appendChild(el("span", "name", item.name || "照片"));
    text.appendChild(el("span", "where", (item.area ? item.area + " · " : "") +
      (PHASES[item.phase] || item.phase) + (item.note ? " · " + item.note : "")));
    text.appendChild(el("span", "label", item.label));
    if (item.state === "sending") {
      var bar = el("progress");
      bar.max = 100;
      bar.value = item.percent;
      text.appendChild(bar);
    }
    if (item.state === "waiting" && item.sent > 0) {
      text.appendChild(el("span", "where", "已传 " + mb(item.sent) + " / " + mb(item.size) +
        "，网络恢复后从这里继续"));
    }
    if (item.state === "failed") {
      text.appendChild(el("span", "reason", item.detail || item.reason));
    }
    if (item.state === "done" && media && media.code) {
      text.appendChild(el("span", "where", "防伪码 " + media.code));
    }
    if (!item.kept && item.state !== "done") {
      text.appendChild(el("span", "reason", "手机无法暂存此文件：上传完成前请不要刷新页面"));
    }
    row.appendChild(text);
    if (item.state === "failed") {
      var actions = el("div", "actions");
      var retry = el("button", "primary", "重试");
      retry.type = "button";
      retry.addEventListener("click", function () { queue.retry(item.id); });
      var drop = el("button", "", "移除");
      drop.type = "button";
      drop.addEventListener("click", function () {
        queue.remove(item.id).then(function () {
          row.parentNode.removeChild(row);
          delete shown[item.id];
          summarize();
        });
      });
      actions.appendChild(retry);
      actions.appendChild(drop);
      row.appendChild(actions);
    }
    summarize();
    if (item.state === "done" || item.state === "processing") { refreshProgress(); }
  }

  var queue = window.HuifangUploads.open({
    base: "/staff",
    headers: function () { return {"X-CSRF-Token": token}; },
    onChange: draw
  });
  window.staffQueue = queue;

  function take(form, input) {
    var files = Array.prototype.slice.call(input.files || []);
    if (!files.length) { return; }
    var note = form.querySelector("input[name=note]");
    var meta = {visitId: visitId, phase: form.getAttribute("data-phase"),
                area: form.getAttribute("data-area"), note: note ? note.value.trim() : ""};
    queue.ready.then(function () {
      files.forEach(function (file) { queue.add(file, meta); });
    });
    input.value = "";
    if (note) { note.value = ""; }
  }

  Array.prototype.forEach.call(document.querySelectorAll("form.capture"), function (form) {
    Array.prototype.forEach.call(form.querySelectorAll("input[type=file]"), function (input) {
      input.addEventListener("change", function () { take(form, input); });
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault(); // with the script, files go through the queue when chosen
    });
  });

  queue.ready.then(function () {
    queue.list(visitId).forEach(draw);
    summarize();
  });
})();
