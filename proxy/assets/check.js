/* Fixative browser check. Runs once in the background of a page: asks
   for a challenge, solves a small proof of work, reports what it sees of
   its environment and receives a pass cookie. No third-party resources,
   no inline code, nothing shown to the person. Source:
   proxy/assets/check.js in the Fixative repository (Apache-2.0). */
(function () {
  "use strict";
  var me = document.currentScript;
  var base = "/.fixative/";
  var back = me && me.getAttribute("data-return");

  // SHA-256 of an ASCII string (FIPS 180-4); returns the first 4 bytes
  // as an unsigned 32-bit word, and the second word, enough for up to 32
  // leading zero bits (difficulty is at most 24).
  var K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ];
  var W = new Int32Array(64);
  function sha256(s) {
    var n = s.length, blocks = ((n + 8) >> 6) + 1, words = new Int32Array(blocks * 16), i;
    for (i = 0; i < n; i++) words[i >> 2] |= (s.charCodeAt(i) & 0xff) << (24 - (i & 3) * 8);
    words[n >> 2] |= 0x80 << (24 - (n & 3) * 8);
    words[blocks * 16 - 1] = n * 8;
    var h0 = 0x6a09e667, h1 = 0xbb67ae85, h2 = 0x3c6ef372, h3 = 0xa54ff53a,
        h4 = 0x510e527f, h5 = 0x9b05688c, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
    for (var b = 0; b < blocks; b++) {
      var a = h0, bb = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7, t;
      for (i = 0; i < 64; i++) {
        if (i < 16) W[i] = words[b * 16 + i];
        else {
          var x = W[i - 15], y = W[i - 2];
          W[i] = (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
                 (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)) +
                 W[i - 7] + W[i - 16];
        }
        var t1 = h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
                 ((e & f) ^ (~e & g)) + K[i] + W[i];
        var t2 = (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
                 ((a & bb) ^ (a & c) ^ (bb & c));
        h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0; h1 = (h1 + bb) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
    }
    return [h0 >>> 0, h1 >>> 0];
  }
  function zeros(h) {
    if (h[0] !== 0) return Math.clz32(h[0]);
    return 32 + Math.clz32(h[1]);
  }
  function solve(token, difficulty) {
    var prefix = token + ":";
    for (var c = 0; ; c++) if (zeros(sha256(prefix + c)) >= difficulty) return c;
  }

  var AUTOMATION = [
    "__playwright__binding__", "__pwInitScripts", "_phantom", "callPhantom", "__nightmare",
    "domAutomation", "domAutomationController", "__selenium_unwrapped", "__webdriver_evaluate",
    "__driver_evaluate", "__fxdriver_unwrapped", "__webdriver_script_fn", "_Selenium_IDE_Recorder",
    "__lastWatirAlert", "Cypress", "__puppeteer_evaluation_script__"
  ];
  function environment() {
    var nav = navigator, r = {}, found = [], k;
    try { r.webdriver = nav.webdriver === true; } catch (e) {}
    r.ua = nav.userAgent;
    r.platform = nav.platform;
    try {
      if (nav.userAgentData) {
        r.brands = nav.userAgentData.brands.map(function (b) { return b.brand + "/" + b.version; });
        r.ua_platform = nav.userAgentData.platform;
      }
    } catch (e) {}
    r.chrome = typeof window.chrome === "object";
    r.outer = [window.outerWidth | 0, window.outerHeight | 0];
    try { r.plugins = nav.plugins ? nav.plugins.length : -1; } catch (e) {}
    try { r.languages = (nav.languages || []).join(","); } catch (e) {}
    for (var i = 0; i < AUTOMATION.length; i++) if (AUTOMATION[i] in window) found.push(AUTOMATION[i]);
    try {
      for (k in document) if (/^\$?cdc_|^\$wdc_/.test(k)) { found.push(k); break; }
      for (k in window) if (/^\$?cdc_/.test(k)) { found.push(k); break; }
    } catch (e) {}
    r.globals = found;
    return r;
  }

  function post(path, body) {
    return fetch(base + path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    });
  }

  function say(text) {
    var el = document.getElementById("fixative-status");
    if (el) el.textContent = text;
  }

  function run() {
    post("challenge").then(function (ch) {
      var t0 = Date.now();
      var counter = solve(ch.token, ch.difficulty);
      var report = environment();
      report.ms = Date.now() - t0;
      return post("pass", { token: ch.token, counter: counter, report: report });
    }).then(function () {
      if (back) {
        var tries = 0;
        try { tries = +(sessionStorage.getItem("fixative-tries") || 0); sessionStorage.setItem("fixative-tries", tries + 1); } catch (e) {}
        if (tries >= 3) {
          say("Your browser did not keep the cookie this check needs. Please allow cookies for this site and reload.");
          return;
        }
        say("Done. Loading the page…");
        location.replace(back);
      }
    }).catch(function () {
      say("The check could not finish. Please reload the page to try again.");
    });
  }

  // At once: the pass should arrive while the page's images still load.
  run();
})();
