// Baton's pages: progressive enhancement over server-rendered forms.
// Every page works without this file except for what is live by nature:
// lease and lock keepalive, countdowns, waiting for work, and the
// "someone else changed this" banner (server-sent events, /v1/events).
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  // Calls the JSON API with the session cookie; unsafe methods carry the
  // CSRF token in a header, as the API requires for cookie sessions.
  async function api(method, path, body, headers) {
    const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf, ...(headers || {}) } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    let data = null;
    const type = res.headers.get("content-type") || "";
    if (type.includes("json")) data = await res.json().catch(() => null);
    return { status: res.status, ok: res.ok, data };
  }

  function events(topics, handlers) {
    if (!window.EventSource) return null;
    const source = new EventSource("/v1/events?topics=" + encodeURIComponent(topics.join(",")));
    for (const [kind, handle] of Object.entries(handlers)) {
      source.addEventListener(kind, (e) => {
        // Each event is {id, at, kind, topics, data}; handlers get `data`.
        let event = {};
        try { event = JSON.parse(e.data); } catch (_) { /* keep {} */ }
        handle(event.data || {}, event);
      });
    }
    return source;
  }

  function ago(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function left(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const m = Math.floor(seconds / 60), s = seconds % 60;
    return m > 0 ? m + ":" + String(s).padStart(2, "0") : s + "s";
  }

  // Times shown in the reader's time zone, and relative times kept fresh.
  function localTimes() {
    for (const t of document.querySelectorAll("time[data-local-time]")) {
      t.textContent = clock(new Date(t.getAttribute("datetime")));
    }
    const tick = () => {
      for (const t of document.querySelectorAll("time[data-relative]")) {
        t.textContent = ago((Date.now() - Date.parse(t.getAttribute("datetime"))) / 1000);
      }
      for (const el of document.querySelectorAll("[data-countdown]")) {
        el.textContent = left((Date.parse(el.dataset.countdown) - Date.now()) / 1000);
      }
    };
    tick();
    setInterval(tick, 1000);
  }

  // ---- Operator desk -------------------------------------------------
  function desk() {
    const item = document.getElementById("item");
    if (item) return deskItem(item);
    const idle = document.getElementById("idle");
    if (idle && idle.dataset.wait === "true") deskWait(idle);
  }

  function deskItem(item) {
    const id = item.dataset.item, token = Number(item.dataset.token);
    const ttl = Number(item.dataset.ttl);
    let expires = Date.parse(item.dataset.expires);
    let lost = false, timer = null;
    const countdown = document.getElementById("countdown");
    const meter = document.getElementById("meter");
    const state = document.getElementById("keepalive-state");
    const form = document.getElementById("outcome-form");

    function loseLease(why) {
      if (lost) return;
      lost = true;
      clearInterval(timer);
      document.getElementById("lost-why").textContent = why;
      document.getElementById("lost").hidden = false;
      for (const b of form.querySelectorAll("button, textarea")) b.disabled = true;
      countdown.classList.add("gone");
      countdown.textContent = "lost";
      state.textContent = "";
    }

    function draw() {
      if (lost) return;
      const s = (expires - Date.now()) / 1000;
      if (s <= 0) return loseLease("Your lease expired while this page was not keeping it alive.");
      countdown.textContent = left(s);
      countdown.classList.toggle("low", s < Math.min(10, ttl / 3));
      meter.style.width = Math.max(0, Math.min(100, (100 * s) / ttl)) + "%";
    }

    async function keepAlive() {
      if (lost || document.visibilityState !== "visible") return;
      try {
        const r = await api("POST", "/v1/items/" + id + "/heartbeat", { token, lease_seconds: ttl });
        if (r.ok && r.data) {
          expires = Date.parse(r.data.expires_at);
          state.textContent = "kept alive while this page is open";
        } else if ([403, 404, 409, 410].includes(r.status)) {
          loseLease((r.data && r.data.detail) || "It was revoked by a supervisor or expired.");
        } else {
          state.textContent = "could not reach Baton; retrying";
        }
      } catch (_) {
        state.textContent = "could not reach Baton; retrying";
      }
      draw();
    }

    form.addEventListener("submit", (e) => { if (lost) e.preventDefault(); });
    document.addEventListener("visibilitychange", keepAlive);
    setInterval(draw, 250);
    timer = setInterval(keepAlive, Math.max(1000, (ttl * 1000) / 3));
    draw();
    events(["item:" + id], {
      "lease.lost": () => loseLease("Your lease expired."),
      "item.revoked": (d) => loseLease("A supervisor" + (d.actor ? " (" + d.actor + ")" : "") + " took it back."),
      "item.requeued": () => loseLease("A supervisor put it back in the queue."),
    });
  }

  // Waits for work with long-poll claims (no thread or connection is held
  // on the server meanwhile) while the page is visible; shows the request
  // the moment one is claimed.
  function deskWait(idle) {
    const queue = idle.dataset.queue, ttl = Number(idle.dataset.ttl);
    let running = false;
    async function loop() {
      if (running) return;
      running = true;
      while (document.visibilityState === "visible") {
        try {
          const r = await api("POST", "/v1/queues/" + encodeURIComponent(queue) + "/claim",
            { lease_seconds: ttl, wait_seconds: 25 });
          if (r.status === 200) { window.location.reload(); return; }
          if (r.status !== 204) await new Promise((ok) => setTimeout(ok, 2000));
        } catch (_) {
          await new Promise((ok) => setTimeout(ok, 2000));
        }
      }
      running = false;
    }
    document.addEventListener("visibilitychange", loop);
    loop();
  }

  // ---- Record editor ---------------------------------------------------
  function record() {
    const rec = document.getElementById("record");
    if (!rec) return;
    const collection = rec.dataset.collection, key = rec.dataset.key;
    const version = Number(rec.dataset.version);
    const lock = rec.dataset.lock;
    const form = document.getElementById("record-form");
    let changes = [];
    let submitting = false;

    const banner = document.getElementById("changed-banner");
    const text = document.getElementById("changed-text");
    function describe() {
      if (!changes.length) return;
      const last = changes[changes.length - 1];
      const who = [...new Set(changes.map((c) => c.actor))].join(", ");
      const paths = [...new Set(changes.flatMap((c) => c.changed || []))]
        .map((p) => p.replace(/^\//, "").replaceAll("/", "."))
        .join(", ");
      text.textContent = who + " changed " + (paths || "this record") + " " +
        ago((Date.now() - Date.parse(last.at)) / 1000) + " (version " + last.version + ")";
    }
    setInterval(describe, 1000);

    async function review() {
      const path = "/v1/collections/" + encodeURIComponent(collection) + "/records/" + encodeURIComponent(key);
      const r = await api("GET", path, undefined, lock ? { "Baton-Lock": lock } : {});
      if (!r.ok || !r.data) return;
      const data = r.data.data || {};
      for (const c of changes) {
        for (const p of c.changed || []) {
          const input = form && form.querySelector('[name="f:' + CSS.escape(p) + '"]');
          if (!input) continue;
          const field = input.closest(".field");
          field.classList.add("changed");
          let note = field.querySelector(".theirs");
          if (!note) {
            note = document.createElement("div");
            note.className = "theirs";
            field.appendChild(note);
          }
          const value = p.split("/").slice(1)
            .map((s) => s.replaceAll("~1", "/").replaceAll("~0", "~"))
            .reduce((v, s) => (v == null ? undefined : v[s]), data);
          note.textContent = "Now (" + c.actor + "): " + (value === undefined ? "removed" :
            typeof value === "string" ? value : JSON.stringify(value));
        }
      }
    }
    document.getElementById("review-button")?.addEventListener("click", review);

    events(["record:" + collection + "/" + key, "lock:" + collection + "/" + key], {
      "record.changed": (d) => {
        if (submitting || Number(d.version) <= version) return;
        changes.push(d);
        banner.hidden = false;
        describe();
      },
      "lock.granted": () => { if (!lock && !form?.dataset.dirty) window.location.reload(); },
      "lock.released": () => { if (!lock && !form?.dataset.dirty) window.location.reload(); },
    });

    if (form) {
      form.addEventListener("input", () => { form.dataset.dirty = "1"; });
      form.addEventListener("submit", () => { submitting = true; });
    }
    if (lock) {
      const ttl = Number(rec.dataset.lockTtl || 60);
      const lockState = document.getElementById("lock-state");
      const beat = async () => {
        if (document.visibilityState !== "visible") return;
        try {
          const r = await api("POST", "/v1/locks/" + lock + "/heartbeat", {});
          if ([403, 404, 409, 410].includes(r.status)) {
            lockState.textContent = "Your lock was lost: " + ((r.data && r.data.detail) || "it ended") + ". Saving will be refused.";
            lockState.parentElement.classList.add("notice", "bad");
          }
        } catch (_) { /* next beat retries */ }
      };
      setInterval(beat, Math.max(1000, (ttl * 1000) / 3));
      document.addEventListener("visibilitychange", beat);
      // Leaving the page (closing the tab, following a link) releases the
      // lock; saving and cancelling release it on the server.
      window.addEventListener("pagehide", () => {
        if (submitting) return;
        // URLSearchParams is sent as a urlencoded form, like the page's forms.
        navigator.sendBeacon("/web/locks/" + lock + "/release", new URLSearchParams({ _csrf: csrf }));
      });
    }
  }

  // ---- Supervisor view -------------------------------------------------
  function admin() {
    const live = document.getElementById("live");
    if (!live) return;
    let pending = null;
    const refresh = () => {
      clearTimeout(pending);
      pending = setTimeout(async () => {
        if (document.activeElement && document.activeElement.tagName === "INPUT") return;
        const res = await fetch(window.location.href, { credentials: "same-origin" });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const next = doc.getElementById("main");
        if (next) document.getElementById("main").innerHTML = next.innerHTML;
      }, 750);
    };
    const kinds = ["item.enqueued", "item.claimed", "item.released", "item.completed", "item.revoked",
      "item.requeued", "lease.lost", "lock.granted", "lock.released"];
    events(live.dataset.topics.split(","), Object.fromEntries(kinds.map((k) => [k, refresh])));
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes();
    const page = document.body.dataset.page;
    if (page === "desk") desk();
    if (page === "record") record();
    if (page === "admin") admin();
  });
})();
