// Only an enhancement: every page works without it. A tap (not a keypress: arrow keys
// move between options) on a single-answer option sends the form at once.
"use strict";
document.querySelectorAll("form[data-autosubmit] input[type=radio]").forEach((input) => {
  input.addEventListener("click", (event) => {
    if (event.detail > 0) {
      input.form.requestSubmit();
    }
  });
});
