// hitl's own script: small, optional (every action works without it), no inline code.
(function () {
  "use strict";

  // Fragments carry data-seq, the event they reflect. Pushes and responses can arrive out of
  // order (an htmx response may land after the push of a newer state), so never let an older
  // fragment replace a newer one, and skip re-sending the same state (which would also wipe a
  // comment being typed when the stream reconnects).
  function seqOf(el) {
    var n = el && el.getAttribute && el.getAttribute("data-seq");
    return n === null || n === undefined ? null : Number(n);
  }

  function incoming(fragment) {
    if (!fragment) return null;
    if (fragment.matches && fragment.matches("[id][data-seq]")) return fragment;
    return fragment.querySelector ? fragment.querySelector("[id][data-seq]") : null;
  }

  var focusLost = false;

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var next = incoming(evt.detail.fragment);
    var nextSeq = seqOf(next);
    if (next && nextSeq !== null) {
      var current = document.getElementById(next.id);
      var currentSeq = seqOf(current);
      if (current && currentSeq !== null && currentSeq >= nextSeq) {
        evt.detail.shouldSwap = false;
        return;
      }
    }
    var target = evt.detail.target;
    var fragment = evt.detail.fragment;
    var kept = sameReview(target, fragment) ? keepTyping(target, fragment) : null;
    if (target && target.contains && target.contains(document.activeElement) && target !== document.body) {
      focusLost = kept || true;
    }
    evt.detail.swappedIds = topIds(fragment);
  });

  // After each out-of-band swap: wire up and localise what came in, keep the title current,
  // and put focus back if the swap took it away.
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var ids = evt.detail.swappedIds;
    evt.detail.swappedIds = null; // htmx fires this once per swapped element: act once
    (ids || []).forEach(function (id) {
      var el = document.getElementById(id);
      if (!el) return;
      if (window.htmx) window.htmx.process(el);
      if (window.hitlLocalTimes) window.hitlLocalTimes(el);
      if (id === "task-status-text") retitle(el);
    });
    restoreFocus();
  });

  // htmx wires up swapped-in content (hx-post on the new review form, say) only when the swap
  // settles, 20 ms later; a click in between (a shortcut pressed as soon as the status line
  // changes) would submit the bare form and reload the page. So it is wired at once, above;
  // htmx.process skips what is already wired, so the settle step does no harm after it.
  function topIds(fragment) {
    if (!fragment) return [];
    var ids = [];
    var tops = fragment.id ? [fragment] : fragment.children || [];
    for (var i = 0; i < tops.length; i++) if (tops[i].id) ids.push(tops[i].id);
    return ids;
  }

  // The review form is sent again while a review stays open (a deadline extended, say): what
  // the reviewer has typed into it so far, and where, must survive the swap.
  function sameReview(target, fragment) {
    if (!target || !fragment || !fragment.querySelector || !target.querySelector) return false;
    var now = target.querySelector("input[name=attempt]");
    var next = fragment.querySelector("input[name=attempt]");
    return !!(now && next && now.value === next.value);
  }

  // Copies typed values and open boxes into the incoming fragment; returns how to put focus
  // back (the element's id and the selection in it), if it was in there.
  function keepTyping(target, fragment) {
    var fields = target.querySelectorAll("textarea[id], input[id]:not([type=hidden])");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.value === field.defaultValue) continue;
      var twin = fragment.querySelector("#" + CSS.escape(field.id));
      if (twin) twin.value = field.value;
    }
    var boxes = target.querySelectorAll("details[id][open]");
    for (var j = 0; j < boxes.length; j++) {
      var box = fragment.querySelector("#" + CSS.escape(boxes[j].id));
      if (box) box.open = true;
    }
    var active = document.activeElement;
    if (!active || !active.id || !target.contains(active)) return null;
    var at = { id: active.id };
    try {
      at.start = active.selectionStart;
      at.end = active.selectionEnd;
    } catch (e) { /* not a text field */ }
    return at;
  }

  // When a swap removed the focused control (say the review form after a decision), put focus
  // on the status line, which says what happened, instead of leaving it on the page body. Right
  // after the out-of-band swap itself: whichever of the stream's push and the form's own answer
  // arrives second is skipped as stale, so there may be no later event to wait for.
  function restoreFocus() {
    if (!focusLost) return;
    var lost = focusLost;
    focusLost = false;
    if (document.activeElement && document.activeElement !== document.body) return;
    var same = lost.id && document.getElementById(lost.id);
    if (same) {
      same.focus();
      if (typeof lost.start === "number" && same.setSelectionRange) same.setSelectionRange(lost.start, lost.end);
      return;
    }
    var status = document.getElementById("task-status-text") || document.getElementById("main");
    if (status) status.focus();
  }

  // The task page's title starts with the task's status ("Completed: …"), so a tab in the
  // background says where its task stands.
  function retitle(status) {
    var badge = status && status.querySelector(".badge");
    if (!badge) return;
    var at = document.title.indexOf(": ");
    if (at < 0) return;
    document.title = badge.textContent.trim() + document.title.slice(at);
  }

  // A form marked data-reset-on-success empties after htmx submits it successfully.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var form = evt.detail.elt;
    if (evt.detail.successful && form && form.hasAttribute && form.hasAttribute("data-reset-on-success")) {
      form.reset();
    }
  });
})();

// Times come from the server in UTC (the same for everyone, and readable without script); here
// they are shown in the reader's own time zone, the UTC time kept as the tooltip.
(function () {
  "use strict";

  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23", timeZoneName: "short",
  });

  function local(at) {
    var part = {};
    format.formatToParts(at).forEach(function (p) { part[p.type] = p.value; });
    return part.year + "-" + part.month + "-" + part.day + " " + part.hour + ":" + part.minute +
      ":" + part.second + " " + part.timeZoneName;
  }

  function localise(root) {
    var times = root.querySelectorAll ? root.querySelectorAll("time[datetime]:not([data-local])") : [];
    for (var i = 0; i < times.length; i++) {
      var at = new Date(times[i].getAttribute("datetime"));
      if (isNaN(at.getTime())) continue;
      times[i].title = times[i].textContent;
      times[i].textContent = local(at);
      times[i].setAttribute("data-local", "");
    }
  }
  window.hitlLocalTimes = localise;
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  // Content htmx swaps in another way (the inbox's rows) is done when it loads.
  document.addEventListener("htmx:load", function (evt) { localise(evt.detail.elt); });
})();

// While the page's live connection is down (the server restarting, the network gone), say so:
// what the page shows may be out of date until it reconnects, which the browser does by itself.
// Not for a blip: only when it is still down after a second. Said again when it is back.
(function () {
  "use strict";

  var down = false;
  var pending = null;
  var leaving = false;
  window.addEventListener("pagehide", function () { leaving = true; });
  // Back from the back-forward cache, the page is live again.
  window.addEventListener("pageshow", function () { leaving = false; });

  function say(text) {
    var state = document.getElementById("live-state");
    if (state) state.textContent = text;
  }

  document.addEventListener("htmx:sseError", function () {
    if (down || pending || leaving) return;
    pending = setTimeout(function () {
      pending = null;
      if (leaving) return;
      down = true;
      say("Live updates are interrupted; reconnecting. What you see may be out of date.");
    }, 1000);
  });

  document.addEventListener("htmx:sseOpen", function () {
    clearTimeout(pending);
    pending = null;
    if (!down) return;
    down = false;
    say("Live updates are back.");
    setTimeout(function () { if (!down) say(""); }, 5000);
  });
})();

// Keyboard shortcuts. On the task page: a approves, e opens the edit box, r goes to the comment
// for requesting changes, n opens the next task waiting for review. On the inbox: / goes to the
// search box. Never while typing in a field, never with a modifier key held; the hints that list
// them show only where this script runs.
(function () {
  "use strict";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return el.isContentEditable || tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT";
  }

  function showHint() {
    ["shortcuts", "search-shortcut"].forEach(function (id) {
      var hint = document.getElementById(id);
      if (hint) hint.hidden = false;
    });
  }
  document.addEventListener("DOMContentLoaded", showHint);
  document.addEventListener("htmx:afterSettle", showHint);

  document.addEventListener("keydown", function (evt) {
    if (evt.defaultPrevented || evt.repeat || evt.ctrlKey || evt.metaKey || evt.altKey) return;
    if (typing(evt.target) || typing(document.activeElement)) return;
    var key = evt.key;
    if (key === "a") {
      var approve = document.getElementById("approve");
      if (!approve) return;
      evt.preventDefault();
      // A click, not form.requestSubmit(): htmx takes the decision from the clicked button.
      approve.click();
    } else if (key === "e") {
      var details = document.getElementById("edit-output");
      var edit = document.getElementById("edited-output");
      if (!details || !edit) return;
      evt.preventDefault();
      details.open = true;
      edit.focus();
    } else if (key === "r") {
      var comment = document.getElementById("comment");
      if (!comment) return;
      evt.preventDefault();
      comment.focus();
    } else if (key === "/") {
      var search = document.getElementById("q");
      if (!search) return;
      evt.preventDefault();
      search.focus();
      search.select();
    } else if (key === "n") {
      var next = document.getElementById("next-task");
      if (!next) return;
      evt.preventDefault();
      next.click();
    }
  });
})();

// The time left before a review deadline, kept current while the page is open.
(function () {
  "use strict";

  function words(secs) {
    function plural(n, unit) { return n + " " + unit + (n === 1 ? "" : "s"); }
    if (secs < 60) return plural(secs, "second");
    if (secs < 3600) return plural(Math.floor(secs / 60), "minute");
    if (secs < 86400) {
      var m = Math.floor((secs % 3600) / 60);
      return plural(Math.floor(secs / 3600), "hour") + (m ? " " + plural(m, "minute") : "");
    }
    var h = Math.floor((secs % 86400) / 3600);
    return plural(Math.floor(secs / 86400), "day") + (h ? " " + plural(h, "hour") : "");
  }

  function tick() {
    var spans = document.querySelectorAll("[data-deadline]");
    for (var i = 0; i < spans.length; i++) {
      var left = Number(spans[i].getAttribute("data-deadline")) - Math.floor(Date.now() / 1000);
      spans[i].textContent = left > 0 ? words(left) + " left" : "due now";
    }
  }
  setInterval(tick, 15000);
})();
