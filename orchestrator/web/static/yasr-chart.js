// A "Chart" view for YASR (YASGUI's result pane): @zazuko/yasgui ships none, and Triply's loads Google Charts
// from a CDN, which the page's Content-Security-Policy refuses. This one draws with Chart.js (npm chart.js,
// vendored under static/chartjs/), creates no inline script or style sheet, and keeps nothing in storage.
//
// Which columns: a column is numeric when every row that binds it binds a literal of an XSD numeric type; each
// numeric column is a data set. The labels are the first other column that has a literal (a name) in every row,
// else the first other column (IRIs shortened by the query's prefixes), else, when every column is numeric, the
// first one (a year, say); further columns are left out. A result without rows or without a numeric data column
// (an ASK, a CONSTRUCT, a list of IRIs) is not charted, and its Chart button is hidden (style.css). Bars by
// default; lines on request.
(function () {
  "use strict";
  if (!window.Yasgui || !window.Chart) { return; }
  var XSD = "http://www.w3.org/2001/XMLSchema#";
  var NUMERIC = ["integer", "decimal", "float", "double", "int", "long", "short", "byte", "nonNegativeInteger",
                 "positiveInteger", "nonPositiveInteger", "negativeInteger", "unsignedLong", "unsignedInt",
                 "unsignedShort", "unsignedByte"].map(function (t) { return XSD + t; });
  var KINDS = { bar: "Bars", line: "Lines" };

  function isNumber(term) {
    return (term.type === "literal" || term.type === "typed-literal") && NUMERIC.indexOf(term.datatype) >= 0
      && isFinite(Number(term.value));
  }

  // {labels: variable, values: [variable, ...]} for a chartable SELECT result, else null.
  function chartColumns(variables, bindings) {
    if (!variables || !bindings || bindings.length === 0) { return null; }
    function every(v, test) { return bindings.every(function (row) { return row[v] !== undefined && test(row[v]); }); }
    var numeric = variables.filter(function (v) {
      var bound = bindings.filter(function (row) { return row[v] !== undefined; });
      return bound.length > 0 && bound.every(function (row) { return isNumber(row[v]); });
    });
    var others = variables.filter(function (v) { return numeric.indexOf(v) < 0; });
    var names = others.filter(function (v) { return every(v, function (t) { return t.type !== "uri"; }); });
    var labels = names.length > 0 ? names[0] : others.length > 0 ? others[0] : variables[0];
    var values = numeric.filter(function (v) { return v !== labels; });
    return values.length > 0 ? { labels: labels, values: values } : null;
  }

  function labelOf(term, prefixes) {
    if (term === undefined) { return ""; }
    if (term.type !== "uri") { return term.value; }
    for (var prefix in prefixes) {
      var ns = prefixes[prefix];
      if (ns && term.value.indexOf(ns) === 0 && term.value.length > ns.length) {
        return prefix + ":" + term.value.substring(ns.length);
      }
    }
    return term.value;
  }

  function ChartPlugin(yasr) {
    this.yasr = yasr;
    this.label = "Chart";
    this.priority = 1;  // never the default view: the table (10) and the response (2) come first
    this.kind = "bar";
    this.chart = null;
    this.box = null;
    this.controls = null;
  }

  ChartPlugin.prototype.columns = function () {
    var results = this.yasr.results;
    if (!results || !results.getVariables || results.getError()) { return null; }
    return chartColumns(results.getVariables(), results.getBindings());
  };

  ChartPlugin.prototype.canHandleResults = function () {
    return this.columns() !== null;
  };

  ChartPlugin.prototype.draw = function () {
    this.destroy();
    var columns = this.columns();
    if (!columns) { return; }
    var rows = this.yasr.results.getBindings();
    var prefixes = this.yasr.getPrefixes();
    var box = document.createElement("div");
    box.className = "pht-chart";
    var canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", columns.values.join(", ") + " by " + columns.labels);
    box.appendChild(canvas);
    this.box = box;
    this.yasr.resultsEl.appendChild(box);
    this.drawControls();
    this.chart = new window.Chart(canvas, {
      type: this.kind,
      data: {
        labels: rows.map(function (row) { return labelOf(row[columns.labels], prefixes); }),
        datasets: columns.values.map(function (v) {
          return { label: v, data: rows.map(function (row) { return row[v] ? Number(row[v].value) : null; }) };
        })
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false,
                 scales: { x: { title: { display: true, text: columns.labels } } } }
    });
  };

  ChartPlugin.prototype.drawControls = function () {
    var self = this;
    var select = document.createElement("select");
    select.className = "pht-chart-kind";
    select.setAttribute("aria-label", "Chart type");
    Object.keys(KINDS).forEach(function (kind) {
      var option = document.createElement("option");
      option.value = kind;
      option.textContent = KINDS[kind];
      option.selected = kind === self.kind;
      select.appendChild(option);
    });
    select.addEventListener("change", function () { self.kind = select.value; self.draw(); });
    this.controls = select;
    this.yasr.pluginControls.appendChild(select);
  };

  ChartPlugin.prototype.destroy = function () {
    if (this.chart) { this.chart.destroy(); this.chart = null; }
    if (this.box) { this.box.remove(); this.box = null; }
    if (this.controls) { this.controls.remove(); this.controls = null; }
  };

  ChartPlugin.prototype.getIcon = function () {
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 16 16");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    [[1, 9, 3, 6], [6, 4, 3, 11], [11, 7, 3, 8]].forEach(function (r) {
      var bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      bar.setAttribute("x", r[0]); bar.setAttribute("y", r[1]);
      bar.setAttribute("width", r[2]); bar.setAttribute("height", r[3]);
      svg.appendChild(bar);
    });
    var icon = document.createElement("div");
    icon.appendChild(svg);
    return icon;
  };

  window.Yasgui.Yasr.registerPlugin("chart", ChartPlugin);
}());
