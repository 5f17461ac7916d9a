// The peer-review page's addendum: the draft started from a significant discrepancy is edited here and signed
// through the report API (POST /api/v1/studies/{uid}/report/addenda, as the report editor signs addenda); the
// page then reloads and shows the signed addendum beside the report.

import { api, t } from "./common.js";

const form = document.getElementById("addendum");

if (form?.tagName === "FORM" && form.dataset.url) {
  const text = document.getElementById("addendum-text");
  const password = document.getElementById("addendum-password");
  const error = document.getElementById("addendum-error");
  const button = document.getElementById("sign-addendum");
  const show = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (text.value.trim() === form.dataset.draft.trim()) return show(t("Write the addendum after the line that cites the review."));
    if (!password.value) return show(t("Enter your password to sign."));
    show("");
    button.disabled = true;
    try {
      await api("POST", form.dataset.url, { text: text.value, password: password.value });
      window.location.reload();
    } catch (failure) {
      password.value = "";
      button.disabled = false;
      show(failure.status === 403 && /password/i.test(failure.message) // reports/api.py WRONG_PASSWORD
        ? t("Wrong password: nothing was signed. Enter the password you sign in with.")
        : t("Could not sign the addendum: {reason}", { reason: failure.message }));
    }
  });
}
