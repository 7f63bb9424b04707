// The browser surface the sandbox gives a page: enough of window, document,
// location, forms, anchors and timers for a page to navigate as it loads.
// Run once per page, before the page's scripts, as a function called with the
// natives (surface.rs) and the page's model. Nothing here reaches the network
// or files: navigations are only recorded (`nav`), never performed.
(function (g, nav, parseUrl, formEncode, modelJson) {
  "use strict";
  var D = JSON.parse(modelJson);
  var defineProperty = Object.defineProperty;
  var now = 0; // the virtual clock, in milliseconds since the page loaded
  var connected = new WeakSet();

  function resolve(u) {
    var p = parseUrl(String(u), D.base);
    if (p === null) throw new SyntaxError("Failed to parse URL: " + u);
    return p[0];
  }
  function go(u) { nav("javascript", resolve(u), "GET", ""); }
  function navigableTarget(t) {
    t = (t || "").toLowerCase();
    // Other targets open a new window: a popup without a user's click, which
    // browsers block.
    return t === "" || t === "_self" || t === "_top" || t === "_parent";
  }

  // ---- URL and URLSearchParams -------------------------------------------
  var FIELDS = ["href", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash", "origin"];
  function URLSearchParams(init) {
    this._l = [];
    if (init === undefined || init === null) return;
    if (typeof init === "object") {
      if (init instanceof URLSearchParams) { this._l = init._l.slice(); return; }
      if (Array.isArray(init)) { for (var i = 0; i < init.length; i++) this._l.push([String(init[i][0]), String(init[i][1])]); return; }
      for (var k in init) if (Object.prototype.hasOwnProperty.call(init, k)) this._l.push([k, String(init[k])]);
      return;
    }
    var s = String(init);
    if (s.charAt(0) === "?") s = s.slice(1);
    var parts = s.split("&");
    for (var j = 0; j < parts.length; j++) {
      if (parts[j] === "") continue;
      var eq = parts[j].indexOf("=");
      var name = eq < 0 ? parts[j] : parts[j].slice(0, eq);
      var value = eq < 0 ? "" : parts[j].slice(eq + 1);
      this._l.push([decodeForm(name), decodeForm(value)]);
    }
  }
  function decodeForm(s) {
    s = s.replace(/\+/g, " ");
    try { return decodeURIComponent(s); } catch (e) { return s; }
  }
  URLSearchParams.prototype = {
    constructor: URLSearchParams,
    get: function (n) { for (var i = 0; i < this._l.length; i++) if (this._l[i][0] === String(n)) return this._l[i][1]; return null; },
    getAll: function (n) { return this._l.filter(function (p) { return p[0] === String(n); }).map(function (p) { return p[1]; }); },
    has: function (n) { return this.get(n) !== null; },
    set: function (n, v) { n = String(n); var done = false; this._l = this._l.filter(function (p) { if (p[0] !== n) return true; if (done) return false; done = true; p[1] = String(v); return true; }); if (!done) this._l.push([n, String(v)]); this._u(); },
    append: function (n, v) { this._l.push([String(n), String(v)]); this._u(); },
    "delete": function (n) { n = String(n); this._l = this._l.filter(function (p) { return p[0] !== n; }); this._u(); },
    forEach: function (f, t) { for (var i = 0; i < this._l.length; i++) f.call(t, this._l[i][1], this._l[i][0], this); },
    keys: function () { return this._l.map(function (p) { return p[0]; })[Symbol.iterator](); },
    values: function () { return this._l.map(function (p) { return p[1]; })[Symbol.iterator](); },
    entries: function () { return this._l.map(function (p) { return [p[0], p[1]]; })[Symbol.iterator](); },
    toString: function () { return formEncode(this._l.map(function (p) { return [p[0], p[1]]; })); },
    _u: function () { if (this._url) this._url.search = this.toString(); },
  };
  URLSearchParams.prototype[Symbol.iterator] = URLSearchParams.prototype.entries;

  function URL(u, base) {
    var p = parseUrl(String(u), base === undefined ? null : String(base instanceof URL ? base.href : base));
    if (p === null) throw new TypeError("Failed to construct 'URL': Invalid URL");
    this._set(p);
  }
  URL.prototype._set = function (p) {
    this._p = p;
    var sp = new URLSearchParams(p[8]);
    sp._url = this;
    this._sp = sp;
  };
  FIELDS.forEach(function (f, i) {
    defineProperty(URL.prototype, f, {
      get: function () { return this._p[i]; },
      set: function (v) {
        if (f === "origin") return;
        var p = parseUrl(rebuild(this._p, f, String(v)), null);
        if (p !== null) this._set(p);
      },
    });
  });
  defineProperty(URL.prototype, "searchParams", { get: function () { return this._sp; } });
  URL.prototype.toString = URL.prototype.toJSON = function () { return this._p[0]; };
  URL.canParse = function (u, b) { return parseUrl(String(u), b === undefined ? null : String(b)) !== null; };
  function rebuild(p, field, v) {
    if (field === "href") return v;
    var parts = { protocol: p[1], username: p[2], password: p[3], hostname: p[5], port: p[6], pathname: p[7], search: p[8], hash: p[9] };
    if (field === "host") { var c = v.lastIndexOf(":"); if (c > 0 && v.indexOf("]", c) < 0) { parts.hostname = v.slice(0, c); parts.port = v.slice(c + 1); } else { parts.hostname = v; } }
    else if (field === "protocol") parts.protocol = v.replace(/:?$/, ":");
    else if (field === "search") parts.search = v === "" ? "" : (v.charAt(0) === "?" ? v : "?" + v);
    else if (field === "hash") parts.hash = v === "" ? "" : (v.charAt(0) === "#" ? v : "#" + v);
    else if (field === "pathname") parts.pathname = v.charAt(0) === "/" ? v : "/" + v;
    else parts[field] = v;
    var auth = parts.username ? parts.username + (parts.password ? ":" + parts.password : "") + "@" : "";
    return parts.protocol + "//" + auth + parts.hostname + (parts.port ? ":" + parts.port : "") + parts.pathname + parts.search + parts.hash;
  }

  // ---- location ----------------------------------------------------------
  var location = {};
  FIELDS.forEach(function (f, i) {
    defineProperty(location, f, {
      enumerable: true,
      get: function () { return parseUrl(D.url, null)[i]; },
      set: function (v) {
        if (f === "origin") return;
        if (f === "href") { go(v); return; }
        var target = rebuild(parseUrl(D.url, null), f, String(v));
        // Changing only the fragment does not load anything.
        if (f === "hash") { D.url = target; return; }
        go(target);
      },
    });
  });
  location.assign = function (u) { go(u); };
  location.replace = function (u) { go(u); };
  location.reload = function () {};
  location.toString = function () { return D.url; };
  location.ancestorOrigins = [];
  Object.freeze(location);

  // ---- elements ----------------------------------------------------------
  function Element(tag, attrs) {
    this.tagName = this.nodeName = String(tag).toUpperCase();
    this.localName = String(tag).toLowerCase();
    this._a = {};
    var self = this;
    (attrs || []).forEach(function (kv) { self._a[kv[0]] = kv[1]; });
    this.style = {};
    this.dataset = {};
    this.childNodes = this.children = [];
    this.parentNode = this.parentElement = null;
    this.innerHTML = this.innerText = this.textContent = "";
    this.nodeType = 1;
  }
  Element.prototype = {
    constructor: Element,
    getAttribute: function (n) { var v = this._a[String(n).toLowerCase()]; return v === undefined ? null : v; },
    setAttribute: function (n, v) { this._a[String(n).toLowerCase()] = String(v); },
    removeAttribute: function (n) { delete this._a[String(n).toLowerCase()]; },
    hasAttribute: function (n) { return this.getAttribute(n) !== null; },
    appendChild: function (c) {
      if (c && typeof c === "object") {
        this.children.push(c);
        c.parentNode = c.parentElement = this;
        if (connected.has(this)) connect(c);
      }
      return c;
    },
    insertBefore: function (c) { return this.appendChild(c); },
    append: function () { for (var i = 0; i < arguments.length; i++) this.appendChild(arguments[i]); },
    prepend: function () { for (var i = 0; i < arguments.length; i++) this.appendChild(arguments[i]); },
    removeChild: function (c) { return c; },
    remove: function () {},
    addEventListener: function () {}, removeEventListener: function () {},
    dispatchEvent: function () { return true; },
    click: function () {}, focus: function () {}, blur: function () {},
    getElementsByTagName: function (t) { return byTag(t); },
    querySelector: function (s) { return query(s)[0] || null; },
    querySelectorAll: function (s) { return query(s); },
    getBoundingClientRect: function () { return { top: 0, left: 0, right: 0, bottom: 0, width: 0, height: 0 }; },
    closest: function () { return null; },
    contains: function () { return false; },
  };
  ["id", "name", "className", "title"].forEach(function (p) {
    var a = p === "className" ? "class" : p;
    defineProperty(Element.prototype, p, {
      get: function () { return this._a[a] === undefined ? "" : this._a[a]; },
      set: function (v) { this._a[a] = String(v); },
    });
  });
  defineProperty(Element.prototype, "isConnected", { get: function () { return connected.has(this); } });
  defineProperty(Element.prototype, "classList", {
    get: function () {
      var el = this;
      var list = function () { return el.className.split(/\s+/).filter(Boolean); };
      return {
        contains: function (c) { return list().indexOf(c) >= 0; },
        add: function (c) { if (list().indexOf(c) < 0) el.className = list().concat([c]).join(" "); },
        remove: function (c) { el.className = list().filter(function (x) { return x !== c; }).join(" "); },
        toggle: function () {},
      };
    },
  });
  function connect(el) {
    connected.add(el);
    (el.children || []).forEach(connect);
  }
  function urlAttr(name) {
    return {
      get: function () { var v = this._a[name]; if (v === undefined) return name === "action" ? D.url : ""; try { return resolve(v); } catch (e) { return v; } },
      set: function (v) { this._a[name] = String(v); },
    };
  }

  function Anchor(tag, attrs) { Element.call(this, tag, attrs); }
  Anchor.prototype = Object.create(Element.prototype);
  Anchor.prototype.constructor = Anchor;
  defineProperty(Anchor.prototype, "href", urlAttr("href"));
  defineProperty(Anchor.prototype, "target", { get: function () { return this._a.target || ""; }, set: function (v) { this._a.target = String(v); } });
  // A script's click() follows the link, as a user's click would (a
  // listener cannot be attached to our anchors, so none can cancel it).
  Anchor.prototype.click = function () {
    if (this._a.href === undefined || !navigableTarget(this._a.target)) return;
    go(this._a.href);
  };
  Anchor.prototype.toString = function () { return this.href; };

  function Field(attrs, form) {
    var tag = "input";
    var rest = [];
    (attrs || []).forEach(function (kv) { if (kv[0] === "tag") tag = kv[1]; else rest.push(kv); });
    Element.call(this, tag, rest);
    this.form = form || null;
    this._v = this._a.value === undefined ? (this._a.type === "checkbox" || this._a.type === "radio" ? "on" : "") : this._a.value;
    this.checked = this._a.checked !== undefined;
    this.disabled = this._a.disabled !== undefined;
  }
  Field.prototype = Object.create(Element.prototype);
  Field.prototype.constructor = Field;
  defineProperty(Field.prototype, "value", { get: function () { return this._v; }, set: function (v) { this._v = String(v); } });
  defineProperty(Field.prototype, "type", {
    get: function () { return (this._a.type || (this.localName === "button" ? "submit" : "text")).toLowerCase(); },
    set: function (v) { this._a.type = String(v); },
  });
  Field.prototype.click = function () {
    if (this.form && (this.type === "submit" || this.type === "image")) this.form.submit(this);
  };

  function Form(attrs, fields) {
    Element.call(this, "form", attrs);
    var self = this;
    this._own = [];
    (fields || []).forEach(function (f) { self._add(new Field(f, self)); });
  }
  Form.prototype = Object.create(Element.prototype);
  Form.prototype.constructor = Form;
  Form.prototype._add = function (field) {
    field.form = this;
    this._own.push(field);
    var n = field.name;
    if (n && !(n in this)) defineProperty(this, n, { value: field, configurable: true });
  };
  Form.prototype.appendChild = function (c) {
    Element.prototype.appendChild.call(this, c);
    if (c instanceof Field) this._add(c);
    return c;
  };
  defineProperty(Form.prototype, "elements", {
    get: function () {
      var list = this._own.slice();
      list.forEach(function (f) { if (f.name && !(f.name in list)) list[f.name] = f; });
      list.namedItem = function (n) { return list[n] || null; };
      return list;
    },
  });
  defineProperty(Form.prototype, "length", { get: function () { return this._own.length; } });
  defineProperty(Form.prototype, "action", urlAttr("action"));
  defineProperty(Form.prototype, "method", {
    get: function () { return (this._a.method || "get").toLowerCase() === "post" ? "post" : ((this._a.method || "").toLowerCase() === "dialog" ? "dialog" : "get"); },
    set: function (v) { this._a.method = String(v); },
  });
  defineProperty(Form.prototype, "target", { get: function () { return this._a.target || ""; }, set: function (v) { this._a.target = String(v); } });
  defineProperty(Form.prototype, "enctype", { get: function () { return this._a.enctype || "application/x-www-form-urlencoded"; }, set: function (v) { this._a.enctype = String(v); } });
  // The form's data set, as the HTML standard builds it for urlencoded forms.
  Form.prototype._pairs = function (submitter) {
    var pairs = [];
    this._own.forEach(function (f) {
      var t = f.type;
      if (!f.name || f.disabled) return;
      if ((t === "checkbox" || t === "radio") && !f.checked) return;
      if (t === "submit" || t === "button" || t === "reset" || t === "image" || f.localName === "button") { if (f !== submitter) return; }
      if (t === "file") return;
      pairs.push([f.name, f.value]);
    });
    return pairs;
  };
  // submit() navigates without firing submit events, as in browsers; a form
  // that is not in the document does not navigate.
  Form.prototype.submit = function (submitter) {
    if (!connected.has(this) || !navigableTarget(this.target)) return;
    var method = this.method;
    if (method === "dialog") return;
    var action = this.action;
    var body = formEncode(this._pairs(submitter));
    if (method === "post") {
      nav("form", action, "POST", body);
    } else {
      var p = parseUrl(action, null);
      if (p === null) return;
      nav("form", rebuild(p, "search", body === "" ? "?" : body), "GET", "");
    }
  };
  Form.prototype.requestSubmit = Form.prototype.submit;
  Form.prototype.reset = function () {};

  // ---- the document's elements ------------------------------------------
  var forms = D.forms.map(function (f) { var form = new Form(f[0], f[1]); connect(form); return form; });
  var anchors = D.anchors.map(function (a) { var el = new Anchor("a", a); connect(el); return el; });
  var others = D.ids.map(function (i) { var el = new Element(i[1], [["id", i[0]]]); connect(el); return el; });
  function named(list) {
    var out = list.slice();
    list.forEach(function (el) {
      [el.id, el.name].forEach(function (k) { if (k && !(k in out)) out[k] = el; });
    });
    out.item = function (i) { return out[i] || null; };
    out.namedItem = function (n) { return out[n] || null; };
    return out;
  }
  function everything() {
    var all = [];
    forms.forEach(function (f) { all.push(f); all.push.apply(all, f._own); });
    return all.concat(anchors, others);
  }
  function byTag(t) {
    t = String(t).toLowerCase();
    return named(everything().filter(function (el) { return t === "*" || el.localName === t; }));
  }
  // Simple selectors only: tag, #id, .class and [attr] / [attr=value],
  // combined (`form#go`, `a.next[href]`), in lists (`a, form`).
  function matches(el, sel) {
    var m = /^([a-zA-Z][a-zA-Z0-9-]*|\*)?((?:[#.][\w-]+|\[[^\]]+\])*)$/.exec(sel.trim());
    if (!m) return false;
    if (m[1] && m[1] !== "*" && el.localName !== m[1].toLowerCase()) return false;
    var parts = m[2].match(/[#.][\w-]+|\[[^\]]+\]/g) || [];
    return parts.every(function (p) {
      if (p.charAt(0) === "#") return el.id === p.slice(1);
      if (p.charAt(0) === ".") return el.classList.contains(p.slice(1));
      var a = /^\[\s*([\w-]+)\s*(?:([*^$~|]?=)\s*["']?([^"'\]]*)["']?)?\s*\]$/.exec(p);
      if (!a) return false;
      var v = el.getAttribute(a[1]);
      if (v === null) return false;
      if (!a[2]) return true;
      if (a[2] === "=") return v === a[3];
      if (a[2] === "^=") return v.indexOf(a[3]) === 0;
      if (a[2] === "$=") return v.slice(-a[3].length) === a[3];
      if (a[2] === "*=") return v.indexOf(a[3]) >= 0;
      return false;
    });
  }
  function query(sel) {
    var alts = String(sel).split(",");
    return named(everything().filter(function (el) { return alts.some(function (s) { return matches(el, s.split(/\s+|>/).filter(Boolean).pop() || ""); }); }));
  }

  // ---- events and timers -------------------------------------------------
  var listeners = { DOMContentLoaded: [], load: [], pageshow: [], readystatechange: [] };
  function listen(type, fn) {
    if (listeners[type] && (typeof fn === "function" || (fn && typeof fn.handleEvent === "function"))) listeners[type].push(fn);
  }
  function unlisten(type, fn) {
    if (listeners[type]) listeners[type] = listeners[type].filter(function (f) { return f !== fn; });
  }
  var timers = [];
  var nextTimer = 1;
  function addTimer(fn, delay, args, repeat) {
    if (typeof fn !== "function") {
      var code = String(fn);
      fn = function () { (0, eval)(code); };
    }
    var d = Number(delay) || 0;
    if (d < 0) d = 0;
    var t = { id: nextTimer++, at: now + d, every: repeat ? Math.max(d, 4) : -1, fn: fn, args: args };
    timers.push(t);
    return t.id;
  }
  function clearTimer(id) { timers = timers.filter(function (t) { return t.id !== id; }); }
  function event(type) {
    return { type: type, target: doc, currentTarget: g, preventDefault: function () {}, stopPropagation: function () {}, isTrusted: true, timeStamp: now };
  }

  // ---- window and document ----------------------------------------------
  var cookies = D.cookie;
  var body = new Element("body", []);
  var head = new Element("head", []);
  var html = new Element("html", []);
  [body, head, html].forEach(connect);
  var doc = {
    nodeType: 9,
    URL: D.url, documentURI: D.url, baseURI: D.base,
    referrer: "",
    title: D.title || "",
    domain: parseUrl(D.url, null)[5],
    characterSet: "UTF-8", charset: "UTF-8", contentType: "text/html",
    readyState: "loading",
    visibilityState: "visible", hidden: false,
    body: body, head: head, documentElement: html, scrollingElement: html,
    forms: named(forms),
    links: named(anchors.filter(function (a) { return a._a.href !== undefined; })),
    anchors: named(anchors.filter(function (a) { return a._a.name !== undefined; })),
    images: named([]), scripts: named([]),
    defaultView: g,
    getElementById: function (id) {
      id = String(id);
      var all = everything();
      for (var i = 0; i < all.length; i++) if (all[i].id === id) return all[i];
      return null;
    },
    getElementsByName: function (n) { return named(everything().filter(function (el) { return el.name === String(n); })); },
    getElementsByTagName: byTag,
    getElementsByClassName: function (c) { return named(everything().filter(function (el) { return el.classList.contains(String(c)); })); },
    querySelector: function (s) { return query(s)[0] || null; },
    querySelectorAll: query,
    createElement: function (tag) {
      tag = String(tag).toLowerCase();
      var el = tag === "form" ? new Form([], []) : tag === "a" ? new Anchor("a", []) : (tag === "input" || tag === "button" || tag === "textarea" || tag === "select") ? new Field([["tag", tag]], null) : new Element(tag, []);
      if (el instanceof Form) forms.push(el);
      else if (el instanceof Anchor) anchors.push(el);
      return el;
    },
    createTextNode: function (t) { return { nodeType: 3, textContent: String(t) }; },
    createEvent: function () { return { initEvent: function () {} }; },
    addEventListener: listen, removeEventListener: unlisten,
    dispatchEvent: function () { return true; },
    // document.write cannot add elements the surface would see; not run.
    write: function () {}, writeln: function () {}, open: function () {}, close: function () {},
    hasFocus: function () { return true; },
    execCommand: function () { return false; },
  };
  defineProperty(doc, "location", { enumerable: true, get: function () { return location; }, set: go });
  defineProperty(doc, "cookie", {
    enumerable: true,
    // The resolution's cookie jar as it was when the page was fetched; what a
    // script writes is visible to later reads on this page only.
    get: function () { return cookies; },
    set: function (v) {
      var pair = String(v).split(";")[0].trim();
      if (pair.indexOf("=") < 0) return;
      var name = pair.slice(0, pair.indexOf("=")).trim();
      var kept = cookies === "" ? [] : cookies.split("; ").filter(function (c) { return c.split("=")[0] !== name; });
      kept.push(pair);
      cookies = kept.join("; ");
    },
  });

  function Storage() { this._m = {}; }
  Storage.prototype = {
    getItem: function (k) { return Object.prototype.hasOwnProperty.call(this._m, k) ? this._m[k] : null; },
    setItem: function (k, v) { this._m[String(k)] = String(v); },
    removeItem: function (k) { delete this._m[k]; },
    clear: function () { this._m = {}; },
    key: function (i) { return Object.keys(this._m)[i] || null; },
  };

  var B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  function btoa(s) {
    s = String(s);
    var out = "";
    for (var i = 0; i < s.length; i += 3) {
      var a = s.charCodeAt(i), b = s.charCodeAt(i + 1), c = s.charCodeAt(i + 2);
      if (a > 255 || b > 255 || c > 255) throw new Error("InvalidCharacterError: btoa: not Latin-1");
      var n = (a << 16) | ((b || 0) << 8) | (c || 0);
      out += B64.charAt(n >> 18) + B64.charAt((n >> 12) & 63) + (i + 1 < s.length ? B64.charAt((n >> 6) & 63) : "=") + (i + 2 < s.length ? B64.charAt(n & 63) : "=");
    }
    return out;
  }
  function atob(s) {
    s = String(s).replace(/[\t\n\f\r ]/g, "");
    if (s.length % 4 === 0) s = s.replace(/==?$/, "");
    if (s.length % 4 === 1 || /[^A-Za-z0-9+/]/.test(s)) throw new Error("InvalidCharacterError: atob: not base64");
    var out = "", bits = 0, acc = 0;
    for (var i = 0; i < s.length; i++) {
      acc = (acc << 6) | B64.indexOf(s.charAt(i));
      bits += 6;
      if (bits >= 8) { bits -= 8; out += String.fromCharCode((acc >> bits) & 255); }
    }
    return out;
  }

  var navigator = {
    userAgent: D.ua, appVersion: D.ua.replace(/^Mozilla\//, ""), appName: "Netscape", appCodeName: "Mozilla",
    platform: "Win32", vendor: "Google Inc.", product: "Gecko",
    language: "en-US", languages: ["en-US", "en"],
    cookieEnabled: true, onLine: true, webdriver: false, doNotTrack: null,
    hardwareConcurrency: 8, maxTouchPoints: 0, plugins: [], mimeTypes: [],
    javaEnabled: function () { return false; },
    sendBeacon: function () { return true; },
  };
  var inert = function () {};
  var props = {
    window: g, self: g, top: g, parent: g, frames: g, opener: null, frameElement: null,
    document: doc, navigator: navigator, history: { length: 1, state: null, pushState: inert, replaceState: inert, back: inert, forward: inert, go: inert },
    screen: { width: 1920, height: 1080, availWidth: 1920, availHeight: 1040, colorDepth: 24, pixelDepth: 24 },
    innerWidth: 1920, innerHeight: 969, outerWidth: 1920, outerHeight: 1040, devicePixelRatio: 1,
    scrollX: 0, scrollY: 0, pageXOffset: 0, pageYOffset: 0, name: "", closed: false, length: 0,
    origin: parseUrl(D.url, null)[10], isSecureContext: parseUrl(D.url, null)[1] === "https:",
    localStorage: new Storage(), sessionStorage: new Storage(),
    console: { log: inert, info: inert, warn: inert, error: inert, debug: inert, trace: inert, dir: inert, table: inert, group: inert, groupEnd: inert, time: inert, timeEnd: inert },
    URL: URL, URLSearchParams: URLSearchParams, atob: atob, btoa: btoa,
    setTimeout: function (f, d) { return addTimer(f, d, Array.prototype.slice.call(arguments, 2), false); },
    setInterval: function (f, d) { return addTimer(f, d, Array.prototype.slice.call(arguments, 2), true); },
    clearTimeout: clearTimer, clearInterval: clearTimer,
    requestAnimationFrame: function (f) { return addTimer(function () { f(now); }, 16, [], false); },
    cancelAnimationFrame: clearTimer,
    requestIdleCallback: function (f) { return addTimer(function () { f({ didTimeout: false, timeRemaining: function () { return 50; } }); }, 1, [], false); },
    cancelIdleCallback: clearTimer,
    queueMicrotask: function (f) { Promise.resolve().then(f); },
    performance: { now: function () { return now; }, timing: { navigationStart: 0 }, mark: inert, measure: inert },
    // No network from scripts: fetch and XMLHttpRequest fail, as offline.
    fetch: function () { return Promise.reject(new TypeError("Failed to fetch")); },
    XMLHttpRequest: function () { this.open = inert; this.setRequestHeader = inert; this.send = function () { throw new Error("NetworkError"); }; },
    // A popup without a user's click is blocked.
    open: function () { return null; },
    alert: inert, confirm: function () { return true; }, prompt: function () { return null; },
    focus: inert, blur: inert, close: inert, print: inert, stop: inert,
    scrollTo: inert, scrollBy: inert, scroll: inert, postMessage: inert,
    matchMedia: function (q) { return { matches: false, media: String(q), addListener: inert, removeListener: inert, addEventListener: inert, removeEventListener: inert }; },
    getComputedStyle: function () { return { getPropertyValue: function () { return ""; } }; },
    addEventListener: listen, removeEventListener: unlisten,
    dispatchEvent: function () { return true; },
    Element: Element, HTMLElement: Element, HTMLFormElement: Form, HTMLAnchorElement: Anchor, HTMLInputElement: Field,
    Event: function (type) { return event(type); },
    CustomEvent: function (type) { return event(type); },
    onload: null, onDOMContentLoaded: null, onpageshow: null,
  };
  Object.keys(props).forEach(function (k) {
    defineProperty(g, k, { value: props[k], writable: true, configurable: true, enumerable: false });
  });
  defineProperty(g, "location", { enumerable: true, configurable: false, get: function () { return location; }, set: go });

  // Handlers from <body onload="…">: compiled like a browser's event handler
  // attribute (`event` in scope) and set on the window where the tag is.
  function setHandlers(list) {
    list.forEach(function (h) {
      var fn;
      try { fn = new Function("event", h[1]); } catch (e) { return; }
      if (h[0] === "load" || h[0] === "pageshow") g["on" + h[0]] = fn;
    });
  }

  // What the driver (timers.rs) runs after the page's scripts, one task per
  // call: DOMContentLoaded listeners, then load (and pageshow) listeners and
  // `onload`, then timers in virtual-time order. Returns false when nothing
  // is left to run before `horizon` milliseconds.
  var phase = 0;
  var queue = [];
  function step(horizon) {
    while (queue.length === 0) {
      if (phase === 0) {
        doc.readyState = "interactive";
        queue = listeners.DOMContentLoaded.concat(listeners.readystatechange).map(function (f) { return [f, "DOMContentLoaded"]; });
        phase = 1;
      } else if (phase === 1) {
        doc.readyState = "complete";
        queue = listeners.load.map(function (f) { return [f, "load"]; });
        if (typeof g.onload === "function") queue.push([g.onload, "load"]);
        listeners.pageshow.forEach(function (f) { queue.push([f, "pageshow"]); });
        if (typeof g.onpageshow === "function") queue.push([g.onpageshow, "pageshow"]);
        phase = 2;
      } else {
        if (timers.length === 0) return false;
        var next = timers[0];
        timers.forEach(function (t) { if (t.at < next.at || (t.at === next.at && t.id < next.id)) next = t; });
        if (next.at > horizon) return false;
        now = next.at;
        if (next.every >= 0) next.at = now + next.every; else clearTimer(next.id);
        var t = next;
        queue = [[function () { t.fn.apply(g, t.args); }, null]];
      }
    }
    var item = queue.shift();
    var f = item[0];
    try {
      if (item[1] === null) f();
      else if (typeof f === "function") f.call(g, event(item[1]));
      else f.handleEvent(event(item[1]));
    } catch (e) {
      // An exception ends the task, as in a browser; the page goes on.
    }
    return true;
  }
  return { step: step, setHandlers: setHandlers };
})
