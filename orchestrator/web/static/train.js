// Keeps a train page live: listens to the page's server-sent events (/ui/trains/{id}/events/stream) and
// updates the state, progress, route, timelines and events table in place, without reloading the page.
(function () {
  "use strict";
  var root = document.getElementById("train");
  if (!root || !window.EventSource || root.dataset.live === "ended") { return; }
  var live = document.getElementById("live");
  var seen = new Set();
  document.querySelectorAll("#events tbody tr").forEach(function (tr) { seen.add(tr.dataset.event); });

  function setState(el, state) { el.className = "state s-" + state; el.textContent = state; }
  function stateSpan(state) { var s = document.createElement("span"); setState(s, state); return s; }
  function cell(tr, value) { var td = document.createElement("td"); td.textContent = value; tr.appendChild(td); }
  function step(list, state, time) {
    var li = document.createElement("li");
    li.appendChild(stateSpan(state));
    if (time) { var t = document.createElement("time"); t.textContent = time; li.append(" ", t); }
    list.appendChild(li);
  }
  function timeline(key, label) {
    var item = document.querySelector('#timelines > li[data-timeline="' + key + '"]');
    if (!item) {
      item = document.createElement("li");
      item.dataset.timeline = key;
      var span = document.createElement("span");
      span.className = "label";
      span.textContent = label + " ";
      var code = document.createElement("code");
      code.textContent = key;
      span.appendChild(code);
      var steps = document.createElement("ol");
      steps.className = "steps";
      steps.dataset.placeholder = "1";
      item.append(span, steps);
      document.getElementById("timelines").appendChild(item);
    }
    return item.querySelector("ol.steps");
  }

  var source = new EventSource(root.dataset.stream);
  source.addEventListener("open", function () { live.textContent = "live"; root.dataset.live = "open"; });
  source.addEventListener("error", function () {
    if (root.dataset.live !== "ended") { live.textContent = "reconnecting…"; }
  });
  source.addEventListener("snapshot", function (message) {
    var d = JSON.parse(message.data);
    setState(document.getElementById("train-state"), d.state);
    var progress = document.getElementById("progress");
    progress.max = d.planned;
    progress.value = d.released;
    document.getElementById("progress-text").textContent = d.released + "/" + d.planned;
    document.getElementById("current").textContent = d.current.join(", ") || "—";
    d.executions.forEach(function (e) {
      var slot = document.querySelector('#route td[data-slot="r' + e.round + "-" + e.slot + '"]');
      if (slot) { slot.dataset.execution = e.id; setState(slot.querySelector(".state"), e.state); }
      var steps = timeline(e.id, "round " + e.round + ", " + e.station);
      if (steps.dataset.placeholder && !steps.children.length) { step(steps, e.state, ""); }
    });
  });
  source.addEventListener("event", function (message) {
    var e = JSON.parse(message.data);
    if (seen.has(e.event)) { return; }
    seen.add(e.event);
    var tr = document.createElement("tr");
    tr.dataset.event = e.event;
    cell(tr, e.time);
    cell(tr, e.execution || "train");
    cell(tr, e.type);
    cell(tr, (e.from_state ? e.from_state + " → " : "") + e.to_state);
    cell(tr, e.agent + (e.role ? " (" + e.role + ")" : ""));
    cell(tr, e.reason);
    cell(tr, e.source);
    document.querySelector("#events tbody").appendChild(tr);
    document.getElementById("event-count").textContent = String(seen.size);
    if (e.to_state) {
      var steps = timeline(e.execution || "train", "execution");
      if (steps.dataset.placeholder) {
        steps.textContent = "";
        delete steps.dataset.placeholder;
        if (e.from_state) { step(steps, e.from_state, ""); }
      }
      step(steps, e.to_state, e.time);
    }
  });
  source.addEventListener("end", function (message) {
    source.close();
    root.dataset.live = "ended";
    live.textContent = "ended (" + JSON.parse(message.data).state + ")";
  });
}());
