// The live job page: htmx replaces the progress block every 2 s; keep the log on its newest line
// unless the reader scrolled up, and then keep their place.
(function () {
  "use strict";
  var NEAR_BOTTOM = 24; // pixels: this close to the end counts as "following"
  var saved = null;

  function log() { return document.getElementById("job-log"); }
  function following(element) { return element.scrollHeight - element.scrollTop - element.clientHeight <= NEAR_BOTTOM; }
  function toEnd(element) { element.scrollTop = element.scrollHeight; }

  document.addEventListener("htmx:beforeSwap", function () {
    var element = log();
    saved = element ? { follow: following(element), top: element.scrollTop } : null;
  });
  document.addEventListener("htmx:afterSettle", function () {
    var element = log();
    if (!element) return;
    if (!saved || saved.follow) toEnd(element); else element.scrollTop = saved.top;
    element.dataset.following = String(!saved || saved.follow);
  });
  document.addEventListener("DOMContentLoaded", function () {
    var element = log();
    if (element) { toEnd(element); element.dataset.following = "true"; }
  });
})();
