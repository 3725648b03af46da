// Basalt admin UI: every form works without this script; it only enhances.
(function () {
  "use strict";
  // The log's setup link may carry its token in the fragment (/_/#/setup/TOKEN):
  // the server never sees fragments, so send the browser to the path form.
  var m = /^#\/setup\/([A-Za-z0-9._-]+)$/.exec(window.location.hash);
  if (m) { window.location.replace("/_/setup/" + m[1]); return; }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  });

  // "Select all" for bulk actions.
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      var boxes = document.querySelectorAll("input[name=ids]");
      for (var i = 0; i < boxes.length; i++) { boxes[i].checked = all.checked; }
    });
  }

  // Relation pickers: a search box (shown only with the script) narrows the options.
  var searches = document.querySelectorAll("input.relation-search");
  for (var k = 0; k < searches.length; k++) {
    searches[k].hidden = false;
    searches[k].addEventListener("input", function (event) {
      var box = event.target, select = document.getElementById(box.getAttribute("data-for"));
      var needle = box.value.toLowerCase();
      for (var o = 0; o < select.options.length; o++) {
        var option = select.options[o];
        option.hidden = needle !== "" && option.value !== "" && option.text.toLowerCase().indexOf(needle) < 0;
      }
    });
  }

  // JSON textareas: say at once when the text is not JSON (the server checks again).
  var areas = document.querySelectorAll("textarea[data-json]");
  for (var j = 0; j < areas.length; j++) {
    areas[j].addEventListener("input", function (event) {
      var area = event.target, text = area.value.trim();
      try { if (text) { JSON.parse(text); } area.setCustomValidity(""); }
      catch (e) { area.setCustomValidity("Not valid JSON: " + e.message); }
      area.reportValidity();
    });
  }
})();
