//! Sign-in, sign-out, the first-run setup and the compiled-in assets.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use basalt_admin_ui::{Chrome, LoginPage, SetupPage, assets};
use serde::Deserialize;

use super::{
    Admin, CSRF_COOKIE, Form, SESSION_COOKIE, clear_cookie, constant_time_eq, cookie, csrf_refused,
    message, page, page_with_status, read_form, redirect, secure, session_cookie, value,
};
use crate::AppState;
use crate::auth::AuthError;

/// `GET /_/`: the collections when signed in, else the sign-in page.
pub async fn home(admin: Option<Admin>) -> HttpResponse {
    match admin {
        Some(_) => redirect("/_/collections"),
        None => redirect("/_/login"),
    }
}

/// `GET /_/assets/{file}`: CSS and script, cached for a year (the URL changes with
/// the content).
pub async fn asset(req: HttpRequest) -> HttpResponse {
    match assets::find(req.path()) {
        Some(asset) => HttpResponse::Ok()
            .content_type(asset.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .body(asset.body),
        None => not_found().await,
    }
}

pub async fn not_found() -> HttpResponse {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no such page in the admin UI.",
    )
}

/// The pre-session CSRF token: the cookie's when it has one, else a new one (set on
/// the response).
fn pre_session_csrf(req: &HttpRequest) -> (String, Option<String>) {
    match cookie(req, CSRF_COOKIE).filter(|c| c.len() >= 20) {
        Some(token) => (token, None),
        None => {
            let token = crate::auth::random_string(32).unwrap_or_default();
            let header = format!(
                "{CSRF_COOKIE}={token}; Path=/_/; HttpOnly; SameSite=Strict{}",
                if secure(req) { "; Secure" } else { "" }
            );
            (token, Some(header))
        }
    }
}

fn with_cookie(mut res: HttpResponse, cookie: Option<String>) -> HttpResponse {
    if let Some(cookie) = cookie
        && let Ok(value) = HeaderValue::from_str(&cookie)
    {
        res.headers_mut().append(header::SET_COOKIE, value);
    }
    res
}

fn bare(title: &str, csrf: String) -> Chrome {
    Chrome {
        title: title.into(),
        csrf,
        ..Chrome::default()
    }
}

/// A path inside the admin UI to go back to; anything else goes home.
fn safe_next(next: &str) -> &str {
    if next.starts_with("/_/") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/_/"
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /_/login`
pub async fn login_page(req: HttpRequest, query: web::Query<LoginQuery>) -> HttpResponse {
    let (csrf, set) = pre_session_csrf(&req);
    with_cookie(
        page(LoginPage {
            chrome: bare("Sign in", csrf),
            email: String::new(),
            error: None,
            next: safe_next(query.next.as_deref().unwrap_or("/_/")).to_owned(),
        }),
        set,
    )
}

/// The pre-session CSRF check of the sign-in and setup forms.
fn check_pre_session(req: &HttpRequest, form: &Form) -> Result<(), super::Refusal> {
    let expected = cookie(req, CSRF_COOKIE).unwrap_or_default();
    if constant_time_eq(value(form, "csrf").as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(super::stop(csrf_refused()))
    }
}

/// `POST /_/login`: rate-limited like the API's sign-in (per address, and per
/// address and email).
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(read_form(payload).await);
    or_page!(check_pre_session(&req, &form));
    let email = value(&form, "email").trim().to_owned();
    let next = safe_next(value(&form, "next")).to_owned();
    let ip = req
        .extensions()
        .get::<crate::http::middleware::ClientIp>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let mut limited = false;
    for (limit, key) in [
        (
            state.live.current().rate_limit_auth_ip,
            format!("admin-login-ip:{ip}"),
        ),
        (
            state.live.current().rate_limit_auth,
            crate::ratelimit::password_key(crate::identity::SUPERUSERS, &email, &ip),
        ),
    ] {
        if let Some(limit) = limit
            && state.limiter.hit(&key, limit).await.is_err()
        {
            limited = true;
            break;
        }
    }
    let csrf = value(&form, "csrf").to_owned();
    let again = |status: StatusCode, error: &str| {
        page_with_status(
            status,
            LoginPage {
                chrome: bare("Sign in", csrf.clone()),
                email: email.clone(),
                error: Some(error.to_owned()),
                next: next.clone(),
            },
        )
    };
    if limited {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts. Wait a minute and try again.",
        );
    }
    let snapshot = state.schema.snapshot();
    match state
        .auth
        .admin_sign_in(&snapshot, &email, value(&form, "password"))
        .await
    {
        Ok(session) => {
            let mut res = redirect(&next);
            if let Ok(value) = HeaderValue::from_str(&session_cookie(&session.token, secure(&req)))
            {
                res.headers_mut().append(header::SET_COOKIE, value);
            }
            res
        }
        Err(AuthError::InvalidCredentials) => {
            again(StatusCode::BAD_REQUEST, "Wrong email or password.")
        }
        Err(err) => {
            tracing::error!(error = %err, "admin sign-in failed");
            again(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Signing in failed on the server.",
            )
        }
    }
}

/// `POST /_/logout`
pub async fn logout(admin: Admin, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    or_page!(admin.form(payload).await);
    let mut res = redirect("/_/login");
    if let Ok(value) = HeaderValue::from_str(&clear_cookie(SESSION_COOKIE, secure(&req))) {
        res.headers_mut().append(header::SET_COOKIE, value);
    }
    res
}

/// `GET /_/setup/{token}`: the first-run page, or why the link no longer works.
pub async fn setup_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    let open = state
        .auth
        .setup_open(&state.schema.snapshot(), &token)
        .await;
    let (csrf, set) = pre_session_csrf(&req);
    with_cookie(
        page_with_status(
            if open {
                StatusCode::OK
            } else {
                StatusCode::GONE
            },
            SetupPage {
                chrome: bare("Set up", csrf),
                token: token.into_inner(),
                open,
                email: String::new(),
                errors: Vec::new(),
            },
        ),
        set,
    )
}

/// `POST /_/setup/{token}`: create the first superuser and sign them in.
pub async fn setup(
    state: web::Data<AppState>,
    req: HttpRequest,
    token: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let form = or_page!(read_form(payload).await);
    or_page!(check_pre_session(&req, &form));
    let email = value(&form, "email").trim().to_owned();
    let password = value(&form, "password");
    let render = |status: StatusCode, open: bool, errors: Vec<(String, String)>| {
        page_with_status(
            status,
            SetupPage {
                chrome: bare("Set up", value(&form, "csrf").to_owned()),
                token: token.to_string(),
                open,
                email: email.clone(),
                errors,
            },
        )
    };
    if password != value(&form, "passwordConfirm") {
        return render(
            StatusCode::BAD_REQUEST,
            true,
            vec![("passwordConfirm".into(), "The passwords differ.".into())],
        );
    }
    let snapshot = state.schema.snapshot();
    match state
        .auth
        .complete_setup(&snapshot, &token, &email, password)
        .await
    {
        Ok(session) => {
            let mut res = redirect("/_/collections");
            if let Ok(value) = HeaderValue::from_str(&session_cookie(&session.token, secure(&req)))
            {
                res.headers_mut().append(header::SET_COOKIE, value);
            }
            res
        }
        Err(AuthError::InvalidToken) => render(StatusCode::GONE, false, Vec::new()),
        Err(err) => {
            let problem = err.problem();
            render(
                crate::http::error::status_of(problem.code),
                true,
                super::problem_errors(&problem),
            )
        }
    }
}
