// Caps on the built-ins that build a large string or array in one call, where
// the engine's slices cannot stop them in time (budget.rs). Run before the
// page's scripts; the originals stay out of the page's reach.
(function (maxString, maxDepth, tooDeep) {
  "use strict";
  function wrap(obj, name, check) {
    var orig = obj[name];
    Object.defineProperty(obj, name, {
      value: function () { check(this, arguments); return orig.apply(this, arguments); },
      writable: true, configurable: true,
    });
  }
  function tooLong() { throw new RangeError("Invalid string length (sandbox limit)"); }
  var sp = String.prototype, ap = Array.prototype;
  wrap(sp, "repeat", function (s, a) { if (String(s).length * (Number(a[0]) || 0) > maxString) tooLong(); });
  wrap(sp, "padStart", function (s, a) { if ((Number(a[0]) || 0) > maxString) tooLong(); });
  wrap(sp, "padEnd", function (s, a) { if ((Number(a[0]) || 0) > maxString) tooLong(); });
  wrap(ap, "join", function (arr, a) {
    var sep = a[0] === undefined ? 1 : String(a[0]).length;
    if ((Number(arr.length) || 0) * (sep + 1) > maxString) tooLong();
  });
  wrap(ap, "fill", function (arr) { if ((Number(arr.length) || 0) > maxString) throw new RangeError("Invalid array length (sandbox limit)"); });
  wrap(JSON, "parse", function (_, a) { if (tooDeep(String(a[0]))) throw new SyntaxError("JSON nested too deeply (sandbox limit)"); });
})
