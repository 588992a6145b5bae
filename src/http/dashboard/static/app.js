// studywatch dashboard: small progressive enhancements. Every page works
// without this file; with it:
// - the page reloads itself every <body data-refresh> seconds, but not while
//   a form on it is being filled in (a field has focus or has been changed),
//   so nobody loses what they were typing;
// - filter forms marked data-autosubmit apply a choice as soon as it is made;
// - a one-off message (e.g. "Alarm 12 acknowledged") is taken out of the
//   address, so that the next reload does not show it again.
(function () {
  "use strict";

  var body = document.body;
  var period = parseInt(body.getAttribute("data-refresh") || "0", 10);
  var status = document.getElementById("refresh-status");
  var loadedAt = Date.now();

  function isField(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT");
  }

  // Forms whose use should hold the refresh back: any form but filters and
  // the sign-out button.
  function holdsRefresh(form) {
    return form && !form.hasAttribute("data-autosubmit") && !form.classList.contains("signout");
  }

  function changed(form) {
    var els = form.elements;
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      if (el.type === "hidden" || el.type === "submit" || el.type === "button") continue;
      if (el.tagName === "SELECT") {
        for (var j = 0; j < el.options.length; j++) {
          if (el.options[j].selected !== el.options[j].defaultSelected) return true;
        }
      } else if (el.type === "checkbox" || el.type === "radio") {
        if (el.checked !== el.defaultChecked) return true;
      } else if (el.value !== el.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function busy() {
    var active = document.activeElement;
    if (isField(active) && holdsRefresh(active.form)) return true;
    var forms = document.forms;
    for (var i = 0; i < forms.length; i++) {
      if (holdsRefresh(forms[i]) && changed(forms[i])) return true;
    }
    return false;
  }

  var paused = false;
  function showStatus() {
    if (!status) return;
    status.textContent = paused
      ? "Updates paused while you fill in a form."
      : "Updates every " + period + " s.";
  }

  if (period > 0) {
    setInterval(function () {
      var nowBusy = busy();
      if (nowBusy !== paused) {
        paused = nowBusy;
        showStatus();
      }
      if (!paused && Date.now() - loadedAt >= period * 1000) {
        window.location.reload();
      }
    }, 1000);
  }

  var filters = document.querySelectorAll("form[data-autosubmit]");
  for (var i = 0; i < filters.length; i++) {
    filters[i].addEventListener("change", function (e) {
      if (e.target.tagName === "SELECT") e.currentTarget.submit();
    });
  }

  var flash = document.querySelector("[data-clear]");
  if (flash && window.history && window.history.replaceState && window.URL) {
    var url = new URL(window.location.href);
    flash.getAttribute("data-clear").split(" ").forEach(function (name) {
      url.searchParams.delete(name);
    });
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();
