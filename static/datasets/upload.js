// Dataset upload: drag and drop onto the drop zone, and a progress bar fed by XMLHttpRequest upload events.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) { return; }
  var input = form.querySelector("input[type=file][name=file]");
  var zone = document.getElementById("dropzone");
  var chosen = document.getElementById("dropzone-file");
  var progress = document.getElementById("upload-progress");
  var bar = document.getElementById("upload-progress-bar");
  var status = document.getElementById("upload-status");
  var details = document.getElementById("upload-details");
  var button = document.getElementById("upload-button");

  function showChosen() {
    chosen.textContent = input.files.length ? input.files[0].name + " (" + Math.ceil(input.files[0].size / 1024) + " kB)" : "";
  }
  input.addEventListener("change", showChosen);
  ["dragenter", "dragover"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.remove("dragging"); });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showChosen();
    }
  });

  function fail(message, items) {
    status.textContent = message;
    status.classList.add("upload-error");
    details.textContent = "";
    (items || []).slice(0, 10).forEach(function (item) {
      var li = document.createElement("li");
      li.textContent = (item.row ? "row " + item.row + ": " : "") + item.message;
      details.appendChild(li);
    });
    button.disabled = false;
  }

  form.addEventListener("submit", function (event) {
    if (!window.XMLHttpRequest || !window.FormData) { return; }  // plain form post still works
    event.preventDefault();
    if (!input.files.length) { fail("Choose a file first."); return; }
    var limit = parseInt(form.dataset.maxMb, 10) * 1024 * 1024;
    if (input.files[0].size > limit) { fail("The file is larger than the " + form.dataset.maxMb + " MB upload limit."); return; }
    var request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var percent = Math.round(100 * e.loaded / e.total);
        bar.style.width = percent + "%";
        status.textContent = "Uploading… " + percent + "%";
      }
    });
    request.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(request.responseText); } catch (ignored) { body = {}; }
      if (request.status === 201 && body.url) {
        status.textContent = "Uploaded: checking the file…";
        window.location.assign(body.url);
      } else {
        fail(body.error || ("Upload failed (HTTP " + request.status + ")."), body.details);
      }
    });
    request.addEventListener("error", function () { fail("The upload was interrupted: check the connection and try again."); });
    status.classList.remove("upload-error");
    status.textContent = "Uploading…";
    details.textContent = "";
    progress.hidden = false;
    bar.style.width = "0%";
    button.disabled = true;
    request.send(new FormData(form));
  });
})();
