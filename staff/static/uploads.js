/*
 * 回访 · staff phone upload queue (no framework, no CDN, ES2017 at most).
 *
 * Every file goes into IndexedDB before a byte is sent, then goes to the server in pieces
 * over tus 1.0 (POST /v1/visits/{id}/uploads, HEAD and PATCH /v1/uploads/{id}). After a
 * dropped connection, a reload, a closed browser or hours offline, the queue asks the
 * server how many bytes it holds (HEAD) and goes on from there. One file at a time: on two
 * bars of signal, parallel uploads only slow each other down.
 *
 *   var queue = HuifangUploads.open({base: "/v1", headers: function () { return {...}; },
 *                                    onChange: function (item) { ... }});
 *   queue.ready.then(function () { queue.list(visitId).forEach(show); });
 *   queue.add(file, {visitId: 7, phase: "before", area: "客厅", note: ""});
 *   queue.retry(item.id); queue.remove(item.id);
 *
 * An item (a plain object, a copy): id, visitId, phase, area, note, name, type, size,
 * state ("waiting" | "sending" | "processing" | "done" | "failed"), sent (bytes the server
 * holds, or has with the piece in flight), percent, label (中文: 等待中 / 上传中 45% /
 * 处理中 / 完成 / 失败), reason (中文, when failed), detail (the server's sentence),
 * mediaId, kept (false when the phone could not keep the file: it is lost on a reload).
 */
(function (global) {
  "use strict";

  var DB_NAME = "huifang-uploads";
  var ITEMS = "items"; // what the screen shows, rewritten as the upload goes on
  var FILES = "files"; // the file itself, written once: a large Blob is never rewritten
  var TUS = "1.0.0";
  var CHUNK = 2 * 1024 * 1024; // small enough that a dropped piece costs little
  var PIECE_TIMEOUT = 120000; // ms without an answer: the connection is gone
  var BACKOFF = [2000, 5000, 10000, 30000, 60000];
  var POLL_EVERY = 3000;

  var LABELS = {waiting: "等待中", sending: "上传中", processing: "处理中", done: "完成",
                failed: "失败"};
  var REASONS = {
    401: "登录已过期，请重新登录后点重试",
    403: "这个服务记录不属于你，无法上传",
    404: "找不到这个服务记录，可能已被删除",
    413: "文件太大：照片请用手机正常尺寸，视频请短一些",
    415: "不是能接收的照片或视频（支持 JPEG、PNG、HEIC、WebP、MP4、MOV）",
    422: "文件已损坏或不完整，请重新拍摄或重新选择",
    storage: "手机存储空间不足，无法暂存此文件",
    processing: "照片处理失败，请重新拍摄或换一张",
    unknown: "上传失败，请点重试"
  };

  // --- IndexedDB: the queue survives reloads and a closed browser ------------------------

  function openDb() {
    return new Promise(function (resolve, reject) {
      if (!global.indexedDB) { reject(new Error("no IndexedDB")); return; }
      var request = global.indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = function () {
        request.result.createObjectStore(ITEMS, {keyPath: "id"});
        request.result.createObjectStore(FILES, {keyPath: "id"});
      };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  function tx(db, name, mode, work) {
    return new Promise(function (resolve, reject) {
      var t = db.transaction(name, mode);
      var result;
      t.oncomplete = function () { resolve(result); };
      t.onerror = function () { reject(t.error); };
      t.onabort = function () { reject(t.error || new Error("aborted")); };
      var request = work(t.objectStore(name));
      if (request) { request.onsuccess = function () { result = request.result; }; }
    });
  }

  // What of a record is written to ITEMS: everything but the file.
  var SAVED = ["id", "added", "visitId", "phase", "area", "note", "name", "type", "size",
               "state", "sent", "url", "mediaId", "reason", "detail", "refused", "media"];

  function saved(record) {
    var out = {};
    SAVED.forEach(function (key) { if (record[key] !== undefined) { out[key] = record[key]; } });
    return out;
  }

  // --- small helpers --------------------------------------------------------------------

  function assign(target) {
    for (var i = 1; i < arguments.length; i++) {
      var source = arguments[i];
      if (!source) { continue; }
      Object.keys(source).forEach(function (key) { target[key] = source[key]; });
    }
    return target;
  }

  function newId() {
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
  }

  function base64(text) {
    // UTF-8 bytes, then Base64 (btoa takes Latin-1 only)
    return global.btoa(unescape(encodeURIComponent(text)));
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function untilOnline() {
    if (global.navigator.onLine !== false) { return Promise.resolve(); }
    return new Promise(function (resolve) {
      global.addEventListener("online", function once() {
        global.removeEventListener("online", once);
        resolve();
      });
    });
  }

  function Refused(status, detail) {
    this.status = status;
    this.detail = detail || "";
  }

  function Offline() {}

  // One request; resolves with {status, headers(name), body} for any answer, rejects with
  // Offline when no answer came (network down, timeout, aborted).
  function request(method, url, headers, body, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url, true);
      xhr.timeout = PIECE_TIMEOUT;
      Object.keys(headers).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
      if (onProgress && xhr.upload) {
        xhr.upload.onprogress = function (event) { onProgress(event.loaded); };
      }
      xhr.onload = function () {
        resolve({status: xhr.status, header: function (name) { return xhr.getResponseHeader(name); },
                 text: xhr.responseText});
      };
      xhr.onerror = xhr.ontimeout = xhr.onabort = function () { reject(new Offline()); };
      xhr.send(body === undefined ? null : body);
    });
  }

  function detailOf(answer) {
    try { return JSON.parse(answer.text).detail || ""; } catch (e) { return ""; }
  }

  // --- the queue --------------------------------------------------------------------------

  function Queue(options) {
    this.base = (options.base || "/v1").replace(/\/$/, "");
    this.extraHeaders = options.headers || function () { return {}; };
    this.onChange = options.onChange || function () {};
    this.chunkSize = options.chunkSize || CHUNK;
    this.items = {}; // id → record {meta…, blob}
    this.order = [];
    this.running = false;
    this.db = null;
    var self = this;
    this.ready = openDb().then(function (db) {
      self.db = db;
      return Promise.all([
        tx(db, ITEMS, "readonly", function (store) { return store.getAll(); }),
        tx(db, FILES, "readonly", function (store) { return store.getAll(); })]);
    }, function () { return [[], []]; }).then(function (found) {
      var files = {};
      (found[1] || []).forEach(function (f) { files[f.id] = f.blob; });
      (found[0] || []).sort(function (a, b) { return a.added - b.added; }).forEach(function (r) {
        if (r.state === "sending") { r.state = "waiting"; }
        r.blob = files[r.id] || null;
        r.kept = true;
        self.items[r.id] = r;
        self.order.push(r.id);
      });
      global.addEventListener("online", function () { self.kick(); });
      self.kick();
    });
  }

  Queue.prototype.headers = function (more) {
    return assign({"Tus-Resumable": TUS}, this.extraHeaders(), more);
  };

  Queue.prototype.view = function (record) {
    var percent = record.size ? Math.floor((record.sent || 0) * 100 / record.size) : 0;
    var label = LABELS[record.state];
    if (record.state === "sending") { label += " " + percent + "%"; }
    return {id: record.id, visitId: record.visitId, phase: record.phase, area: record.area,
            note: record.note, name: record.name, type: record.type, size: record.size,
            state: record.state, sent: record.sent || 0, percent: percent, label: label,
            reason: record.reason || null, detail: record.detail || null,
            mediaId: record.mediaId || null, media: record.media || null,
            kept: record.kept !== false};
  };

  Queue.prototype.list = function (visitId) {
    var self = this;
    return this.order.map(function (id) { return self.items[id]; }).filter(function (r) {
      return visitId === undefined || r.visitId === visitId;
    }).map(function (r) { return self.view(r); });
  };

  Queue.prototype.save = function (record) {
    this.onChange(this.view(record));
    if (!this.db || record.kept === false) { return Promise.resolve(); }
    var self = this;
    return tx(this.db, ITEMS, "readwrite", function (store) { return store.put(saved(record)); })
      .catch(function () { record.kept = false; self.onChange(self.view(record)); });
  };

  Queue.prototype.add = function (file, meta) {
    var record = {
      id: newId(), added: Date.now(), visitId: meta.visitId, phase: meta.phase,
      area: meta.area || "", note: meta.note || "", name: file.name || "", type: file.type || "",
      size: file.size, blob: file, state: "waiting", sent: 0, url: null, mediaId: null,
      reason: null, detail: null, kept: true
    };
    this.items[record.id] = record;
    this.order.push(record.id);
    var self = this;
    var db = this.db;
    var kept = db
      ? tx(db, FILES, "readwrite", function (store) {
        return store.put({id: record.id, blob: file});
      }).then(function () {
        return tx(db, ITEMS, "readwrite", function (store) { return store.put(saved(record)); });
      })
      : Promise.reject(new Error("no IndexedDB"));
    // Kept on the phone before anything is sent; if it cannot be, it is still sent, and
    // the page can say it will not survive a reload (item.kept).
    return kept.catch(function () { record.kept = false; }).then(function () {
      self.onChange(self.view(record));
      self.kick();
      return self.view(record);
    });
  };

  Queue.prototype.retry = function (id) {
    var record = this.items[id];
    if (!record || record.state !== "failed") { return; }
    record.state = "waiting";
    record.reason = record.detail = null;
    if (record.refused) { record.url = null; record.sent = 0; record.refused = false; }
    var self = this;
    this.save(record).then(function () { self.kick(); });
  };

  Queue.prototype.remove = function (id) {
    var record = this.items[id];
    if (!record) { return Promise.resolve(); }
    record.cancelled = true;
    delete this.items[id];
    this.order = this.order.filter(function (other) { return other !== id; });
    if (record.url && record.state !== "done") {
      request("DELETE", record.url, this.headers()).catch(function () {});
    }
    return this.drop(id, true);
  };

  // The phone's copy of the file (and with ``item``, the line too) goes.
  Queue.prototype.drop = function (id, item) {
    var db = this.db;
    if (!db) { return Promise.resolve(); }
    return tx(db, FILES, "readwrite", function (store) { return store.delete(id); })
      .then(function () {
        if (item) { return tx(db, ITEMS, "readwrite", function (store) { return store.delete(id); }); }
      }).catch(function () {});
  };

  Queue.prototype.next = function () {
    for (var i = 0; i < this.order.length; i++) {
      var record = this.items[this.order[i]];
      if (record.state === "waiting" || record.state === "processing") { return record; }
    }
    return null;
  };

  Queue.prototype.kick = function () {
    if (this.running) { return; }
    this.running = true;
    var self = this;
    this.run().then(function () { self.running = false; }, function () { self.running = false; });
  };

  Queue.prototype.run = async function () {
    var record;
    var failures = 0;
    while ((record = this.next()) !== null) {
      try {
        if (record.state === "processing") {
          await this.watch(record);
        } else {
          await this.send(record);
        }
        failures = 0;
      } catch (error) {
        if (record.cancelled) { continue; }
        if (error instanceof Refused) {
          await this.fail(record, error);
        } else {
          // No answer: wait for the network, longer each time, then ask where to go on.
          if (record.state === "sending") { record.state = "waiting"; await this.save(record); }
          await untilOnline();
          await sleep(BACKOFF[Math.min(failures, BACKOFF.length - 1)]);
          failures += 1;
        }
      }
    }
  };

  Queue.prototype.fail = function (record, error) {
    record.state = "failed";
    record.reason = REASONS[error.status] || (error.status === "processing"
      ? REASONS.processing : REASONS.unknown);
    record.detail = error.detail;
    record.refused = error.status === 413 || error.status === 415 || error.status === 422;
    return this.save(record);
  };

  Queue.prototype.answer = function (answer) {
    if (answer.status >= 500) { throw new Offline(); } // the server's trouble: try again later
    if (answer.status >= 400) { throw new Refused(answer.status, detailOf(answer)); }
    return answer;
  };

  Queue.prototype.create = async function (record) {
    var metadata = ["phase " + base64(record.phase), "filename " + base64(record.name)];
    if (record.area) { metadata.push("area " + base64(record.area)); }
    if (record.note) { metadata.push("note " + base64(record.note)); }
    var answer = this.answer(await request(
      "POST", this.base + "/visits/" + record.visitId + "/uploads",
      this.headers({"Upload-Length": String(record.size), "Upload-Metadata": metadata.join(",")})));
    var location = answer.header("Location");
    if (location.charAt(0) === "/") { location = global.location.origin + location; }
    record.url = location;
    record.sent = 0;
    await this.save(record);
  };

  // Where the server is: its byte count; null when the upload is gone (expired, swept).
  Queue.prototype.offset = async function (record) {
    var answer = await request("HEAD", record.url, this.headers());
    if (answer.status === 404) { return null; }
    if (answer.status === 410) {
      var status = await request("GET", record.url, this.headers());
      var body = {};
      try { body = JSON.parse(status.text); } catch (e) { body = {}; }
      if (body.status === "refused") { throw new Refused(415, body.failure_reason); }
      return null; // expired: start again
    }
    this.answer(answer);
    var media = answer.header("Upload-Media-Id");
    if (media) { record.mediaId = Number(media); }
    return Number(answer.header("Upload-Offset"));
  };

  Queue.prototype.send = async function (record) {
    if (!record.blob) { throw new Refused("storage", ""); }
    record.state = "sending";
    await this.save(record);
    if (!record.url) { await this.create(record); }
    var offset = await this.offset(record);
    if (offset === null) {
      record.url = null;
      await this.create(record);
      offset = 0;
    }
    var self = this;
    while (offset < record.size && !record.cancelled) {
      var end = Math.min(offset + this.chunkSize, record.size);
      var start = offset;
      record.sent = offset;
      this.onChange(this.view(record));
      var answer = await request("PATCH", record.url, this.headers({
        "Upload-Offset": String(offset), "Content-Type": "application/offset+octet-stream"
      }), record.blob.slice(start, end), function (loaded) {
        record.sent = start + loaded;
        self.onChange(self.view(record));
      });
      if (answer.status === 409 || answer.status === 404 || answer.status === 410) {
        // Moved on by someone else (another tab, an old request), or gone: ask again.
        offset = await this.offset(record);
        if (offset === null) { record.url = null; await this.create(record); offset = 0; }
        continue;
      }
      this.answer(answer);
      offset = Number(answer.header("Upload-Offset"));
      var media = answer.header("Upload-Media-Id");
      if (media) { record.mediaId = Number(media); }
      record.sent = offset;
      await this.save(record);
    }
    if (record.cancelled) { return; }
    if (!record.mediaId) { // the last piece's answer was lost: the server knows
      await this.offset(record);
    }
    record.state = "processing";
    await this.save(record);
    record.blob = null; // the server has every byte: the phone's copy can go
    await this.drop(record.id, false);
  };

  // Processing on the server (watermark, renditions): until the media is ready or failed.
  Queue.prototype.watch = async function (record) {
    if (!record.mediaId) {
      var status = this.answer(await request("GET", record.url, this.headers()));
      var body = JSON.parse(status.text);
      if (!body.media_id) { await sleep(POLL_EVERY); return; }
      record.mediaId = body.media_id;
    }
    for (;;) {
      var answer = this.answer(await request("GET", this.base + "/media/" + record.mediaId,
                                             this.headers()));
      var media = JSON.parse(answer.text);
      if (media.status === "ready") {
        record.state = "done";
        record.media = media;
        this.onChange(this.view(record));
        await this.drop(record.id, true); // on screen until the page goes; nothing kept
        return;
      }
      if (media.status === "failed") {
        throw new Refused("processing", media.failure_reason);
      }
      await sleep(POLL_EVERY);
    }
  };

  global.HuifangUploads = {
    open: function (options) { return new Queue(options || {}); },
    LABELS: LABELS,
    REASONS: REASONS
  };
})(window);
