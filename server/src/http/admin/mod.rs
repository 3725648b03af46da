//! The admin UI at `/_/`: server-rendered pages (templates in the `basalt-admin-ui`
//! crate) over the same services as the API. Handlers extract, call one service and
//! render; they build no SQL and check no rule.
//!
//! Security: the session is an HttpOnly, SameSite=Strict cookie scoped to `/_/`
//! (Secure when `app_url` is https or the request came over TLS); every form posts a
//! CSRF token (the session's, or before sign-in a double-submit cookie); every page is
//! sent with a Content-Security-Policy that allows no inline script or style, with
//! `X-Frame-Options: DENY` and a same-origin referrer policy.

/// The value of a `Result<T, Refusal>`, or return the refusal's page.
macro_rules! or_page {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(refusal) => return *refusal,
        }
    };
}

mod collections;
mod functions;
mod records;
mod session;
mod system;

use std::future::Future;
use std::pin::Pin;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, header::LOCATION};
use actix_web::middleware::{Next, from_fn};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use basalt_admin_ui::Chrome;
use basalt_admin_ui::Template;

use crate::AppState;
use crate::auth::admin::AdminSession;

/// The session cookie.
const SESSION_COOKIE: &str = "basalt_admin";
/// The pre-session CSRF cookie (sign-in and setup forms).
const CSRF_COOKIE: &str = "basalt_csrf";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The admin UI's routes, under `/_`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/_").route(web::get().to(session::home)))
        .service(
            web::scope("/_")
                .wrap(from_fn(headers))
                .route("/", web::get().to(session::home))
                .route("/assets/{file}", web::get().to(session::asset))
                .route("/login", web::get().to(session::login_page))
                .route("/login", web::post().to(session::login))
                .route("/logout", web::post().to(session::logout))
                .route("/setup/{token}", web::get().to(session::setup_page))
                .route("/setup/{token}", web::post().to(session::setup))
                .route("/collections", web::get().to(collections::list))
                .route("/collections/new", web::get().to(collections::new_page))
                .route("/collections/new", web::post().to(collections::create))
                .route("/schema", web::get().to(collections::schema_page))
                .route("/schema/export", web::get().to(collections::export))
                .route("/schema/import", web::post().to(collections::import))
                .route("/schema/history", web::get().to(system::history))
                .route("/keys", web::get().to(system::keys))
                .route("/keys", web::post().to(system::create_key))
                .route("/keys/{id}/revoke", web::post().to(system::revoke_key))
                .route("/collections/{name}", web::get().to(collections::edit_page))
                .route("/collections/{name}", web::post().to(collections::update))
                .route(
                    "/collections/{name}/delete",
                    web::get().to(collections::delete_page),
                )
                .route(
                    "/collections/{name}/delete",
                    web::post().to(collections::delete),
                )
                .route("/collections/{name}/records", web::get().to(records::list))
                .route(
                    "/collections/{name}/records/new",
                    web::get().to(records::new_page),
                )
                .route(
                    "/collections/{name}/records/new",
                    web::post().to(records::create),
                )
                .route(
                    "/collections/{name}/records/delete",
                    web::get().to(records::delete_page),
                )
                .route(
                    "/collections/{name}/records/delete",
                    web::post().to(records::delete),
                )
                .route(
                    "/collections/{name}/records/{id}",
                    web::get().to(records::edit_page),
                )
                .route(
                    "/collections/{name}/records/{id}",
                    web::post().to(records::update),
                )
                .route(
                    "/collections/{name}/records/{id}/json",
                    web::get().to(records::json),
                )
                .route(
                    "/collections/{name}/records/{id}/impersonate",
                    web::post().to(records::impersonate),
                )
                .route(
                    "/collections/{name}/records/{id}/mail",
                    web::post().to(records::mail),
                )
                .route(
                    "/collections/{name}/records/{id}/revoke",
                    web::post().to(records::revoke),
                )
                .route("/functions", web::get().to(functions::list))
                .route("/functions", web::post().to(functions::deploy))
                .route(
                    "/functions/deliveries/{id}/replay",
                    web::post().to(functions::replay),
                )
                .route(
                    "/functions/deliveries/{id}/discard",
                    web::post().to(functions::discard),
                )
                .route(
                    "/functions/{name}/toggle",
                    web::post().to(functions::toggle),
                )
                .route(
                    "/functions/{name}/delete",
                    web::post().to(functions::delete),
                )
                .route("/events", web::get().to(system::events))
                .route("/instances", web::get().to(system::instances))
                .route("/mails", web::get().to(system::mails))
                .route("/mails/{id}", web::get().to(system::mail))
                .route("/settings", web::get().to(system::settings))
                .route("/settings", web::post().to(system::save_settings))
                .route("/settings/test-mail", web::post().to(system::test_mail))
                .default_service(web::to(session::not_found)),
        );
}

/// The security headers of every admin response, and the renewed session cookie
/// when the request's session was renewed.
async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let secure = secure(req.request());
    let mut res = next.call(req).await?;
    let renewed = res.request().extensions().get::<Renewed>().cloned();
    let headers = res.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(Renewed(token)) = renewed
        && !headers.contains_key(header::SET_COOKIE)
        && let Ok(value) = HeaderValue::from_str(&session_cookie(&token, secure))
    {
        headers.append(header::SET_COOKIE, value);
    }
    Ok(res)
}

/// A renewed session token, to be set as the cookie on the way out.
#[derive(Clone)]
struct Renewed(String);

/// Whether cookies must be `Secure`: `app_url` is https, or this request came over TLS
/// (directly or, from a trusted proxy, as `X-Forwarded-Proto: https`).
fn secure(req: &HttpRequest) -> bool {
    let app_https = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.live.current().app_url.starts_with("https://"));
    app_https || req.connection_info().scheme() == "https"
}

fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/_/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        crate::auth::admin::SESSION_ABSOLUTE,
        if secure { "; Secure" } else { "" }
    )
}

fn clear_cookie(name: &str, secure: bool) -> String {
    format!(
        "{name}=; Path=/_/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// A signed-in superuser; anyone else is sent to the sign-in page (with the page
/// they asked for to come back to).
pub struct Admin(pub AdminSession);

impl FromRequest for Admin {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Admin, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or_else(|| actix_web::error::ErrorInternalServerError("no state"))?;
            let to_login = || {
                let next = if req.method() == actix_web::http::Method::GET {
                    req.uri()
                        .path_and_query()
                        .map_or("/_/", |p| p.as_str())
                        .to_owned()
                } else {
                    "/_/".to_owned()
                };
                let location = format!("/_/login?next={}", urlencode(&next));
                let mut res = redirect(&location);
                if let Ok(value) =
                    HeaderValue::from_str(&clear_cookie(SESSION_COOKIE, secure(&req)))
                {
                    res.headers_mut().append(header::SET_COOKIE, value);
                }
                actix_web::error::InternalError::from_response("sign in", res).into()
            };
            let Some(token) = cookie(&req, SESSION_COOKIE) else {
                return Err(to_login());
            };
            let snapshot = state.schema.snapshot();
            match state.auth.admin_session(&snapshot, &token).await {
                Ok(session) => {
                    if session.renewed {
                        req.extensions_mut().insert(Renewed(session.token.clone()));
                    }
                    Ok(Admin(session))
                }
                Err(_) => Err(to_login()),
            }
        })
    }
}

impl Admin {
    /// The page frame for this superuser.
    fn chrome(&self, title: impl Into<String>, section: &'static str) -> Chrome {
        Chrome {
            title: title.into(),
            user: self.0.email().to_owned(),
            csrf: self.0.csrf.clone(),
            section,
            notice: None,
        }
    }

    /// The superuser as the services see the caller.
    fn identity(&self) -> crate::identity::Identity {
        crate::identity::Identity::Superuser {
            record: self.0.record.clone(),
        }
    }

    /// The posted form, refused without this session's CSRF token.
    async fn form(&self, payload: web::Payload) -> Result<Form, Refusal> {
        let form = read_form(payload).await?;
        self.check_csrf(&form)?;
        Ok(form)
    }

    /// Refuse a form without this session's CSRF token.
    fn check_csrf(&self, form: &Form) -> Result<(), Refusal> {
        if constant_time_eq(value(form, "csrf").as_bytes(), self.0.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(stop(csrf_refused()))
        }
    }
}

fn csrf_refused() -> HttpResponse {
    page_with_status(
        StatusCode::FORBIDDEN,
        basalt_admin_ui::MessagePage {
            chrome: Chrome {
                title: "Form expired".into(),
                ..Chrome::default()
            },
            message: "This form was refused: its security token is missing or stale. \
                      Go back, reload the page and try again."
                .into(),
            link: "/_/".into(),
            link_text: "Back to the admin UI".into(),
        },
    )
}

/// A page that ends a handler early (a refused form, an unknown collection).
type Refusal = Box<HttpResponse>;

fn stop(res: HttpResponse) -> Refusal {
    Box::new(res)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && !b.is_empty()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A urlencoded form, in order, repeated keys kept.
pub type Form = Vec<(String, String)>;

/// Read a urlencoded body (at most 1 MiB).
async fn read_form(payload: web::Payload) -> Result<Form, Refusal> {
    let bytes = payload
        .to_bytes_limited(1 << 20)
        .await
        .map_err(|_| {
            stop(message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is larger than 1 MiB.",
            ))
        })?
        .map_err(|_| {
            stop(message(
                StatusCode::BAD_REQUEST,
                "Bad form",
                "The form could not be read.",
            ))
        })?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// The first value of `key`, or "".
fn value<'a>(form: &'a Form, key: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Every value of `key`.
fn values<'a>(form: &'a Form, key: &str) -> Vec<&'a str> {
    form.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .finish()
}

fn page(template: impl Template) -> HttpResponse {
    page_with_status(StatusCode::OK, template)
}

fn page_with_status(status: StatusCode, template: impl Template) -> HttpResponse {
    match template.render() {
        Ok(html) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(err) => {
            tracing::error!(error = %err, "admin page failed to render");
            HttpResponse::InternalServerError()
                .content_type("text/plain; charset=utf-8")
                .body("The page failed to render.")
        }
    }
}

/// A message page outside the signed-in frame.
fn message(status: StatusCode, title: &str, text: &str) -> HttpResponse {
    page_with_status(
        status,
        basalt_admin_ui::MessagePage {
            chrome: Chrome {
                title: title.into(),
                ..Chrome::default()
            },
            message: text.into(),
            link: "/_/".into(),
            link_text: "Back to the admin UI".into(),
        },
    )
}

/// A message page inside the signed-in frame.
fn admin_message(admin: &Admin, status: StatusCode, title: &str, text: &str) -> HttpResponse {
    page_with_status(
        status,
        basalt_admin_ui::MessagePage {
            chrome: admin.chrome(title, ""),
            message: text.into(),
            link: "/_/collections".into(),
            link_text: "Back to the collections".into(),
        },
    )
}

/// A message page saying why an action failed, with the status of its code.
fn failed(admin: &Admin, title: &str, problem: crate::errors::Problem) -> HttpResponse {
    admin_message(
        admin,
        crate::http::error::status_of(problem.code),
        title,
        &problem.message,
    )
}

/// What a finished action says on the next page (`?done=`): a fixed set, so no link
/// can make the UI say something else.
fn notice(done: Option<&str>) -> Option<String> {
    Some(
        match done? {
            "created" => "Created.",
            "saved" => "Saved.",
            "deleted" => "Deleted.",
            "imported" => "Imported.",
            "revoked" => "Sessions revoked: the account must sign in again.",
            "revoked-key" => "Key revoked.",
            "deployed" => "Deployed.",
            "mailed" => "Mail sent (without SMTP it is under Mails).",
            _ => return None,
        }
        .to_owned(),
    )
}

#[derive(serde::Deserialize)]
struct Done {
    done: Option<String>,
}

/// Field errors as `(path, message)` pairs, for the templates.
fn field_errors(errors: &crate::validation::FieldErrors) -> Vec<(String, String)> {
    errors
        .keys()
        .filter_map(|path| Some((path.to_owned(), errors.get(path)?.message.clone())))
        .collect()
}

/// Field errors of a domain error as `(path, message)` pairs, or one general message.
fn problem_errors(problem: &crate::errors::Problem) -> Vec<(String, String)> {
    let mut errors = field_errors(&problem.fields);
    if errors.is_empty() {
        errors.push((String::new(), problem.message.clone()));
    }
    errors
}
