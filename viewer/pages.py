"""Signing in and out, the home page that sends each role to its work, and the language switch."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import login_required
from flask_wtf import FlaskForm
from werkzeug.exceptions import TooManyRequests
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from telerad.auth import caller, limiter, login_manager, sign_in, sign_out

pages = Blueprint("pages", __name__)

HOME_OF_ROLE = {
    "station": "station.page",
    "reader": "worklist.page",
    "consultant": "worklist.page",
    "supervisor": "dashboard.page",
    "admin": "dashboard.page",
}


class SignInForm(FlaskForm):
    """The sign-in form (CSRF-protected by Flask-WTF)."""

    name = StringField(validators=[DataRequired(), Length(max=64)])
    password = PasswordField(validators=[DataRequired(), Length(max=256)])


def _sign_in_limit() -> str:
    return current_app.extensions["telerad.config"].web.sign_in_limit


@login_manager.unauthorized_handler
def _to_sign_in() -> Response:
    return redirect(url_for("pages.login", next=request.full_path.rstrip("?") if request.method == "GET" else None))


def _safe_next(target: str | None) -> str | None:
    """Only a path on this site (never ``//host`` or a scheme) may be returned to after signing in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@pages.get("/")
@login_required
def home() -> Response:
    """Each role's own page: the station page for stations, the dashboard for supervisors, the worklist for readers."""
    return redirect(url_for(HOME_OF_ROLE[caller().role]))


@pages.route("/login", methods=["GET", "POST"])
@limiter.limit(_sign_in_limit, methods=["POST"])
def login() -> Response | str:
    """The sign-in page."""
    form = SignInForm()
    failed = False
    if form.validate_on_submit():
        with current_app.extensions["telerad.sessions"]() as session, session.begin():
            user = sign_in(session, form.name.data.strip(), form.password.data, request.remote_addr)
        if user is not None:
            return redirect(_safe_next(request.args.get("next")) or url_for("pages.home"))
        failed = True
    status = 401 if failed else 200
    return render_template("login.html", form=form, failed=failed), status


@pages.post("/logout")
def logout() -> Response:
    """Sign out and return to the sign-in page."""
    with current_app.extensions["telerad.sessions"]() as session, session.begin():
        sign_out(session)
    return redirect(url_for("pages.login"))


@pages.app_errorhandler(TooManyRequests)
def _too_many(exc: TooManyRequests) -> tuple[str, int] | TooManyRequests:
    if request.endpoint != "pages.login":
        return exc
    form = SignInForm()
    return render_template("login.html", form=form, failed=False, message=_("Too many attempts. Wait a minute, then try again.")), 429
