// mirrorfarm admin page: small conveniences; everything reads and works without them.
document.querySelectorAll("button[data-copy]").forEach(function (b) {
  b.hidden = false;
  b.addEventListener("click", function () {
    var text = document.getElementById(b.dataset.copy).textContent.trim();
    navigator.clipboard.writeText(text).then(function () {
      b.textContent = "Copied";
    }, function () {
      b.textContent = "Copy failed: select the text";
    });
  });
});
