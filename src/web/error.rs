//! Errors as users see them. A handler returns `AppError`; its response carries only a
//! status and a plain message, which `web::error_pages` turns into the page. The cause of a
//! 500 is logged with its chain; users never see it. The use-case modules' own errors
//! become an `AppError` here, in one `From` each.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, ResponseError};
use tracing_actix_web::RequestId;

use crate::auth::factors::FactorError;
use crate::auth::session::SessionError;
use crate::db::DbError;
use crate::domain::Invalid;
use crate::limits::RetryAfter;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "The form has expired or did not come from this site. Go back, reload the page and try again."
    )]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("There is no page at this address.")]
    NotFound,
    #[error("This address does not accept that kind of request.")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("That form is too large. Nothing was changed.")]
    PayloadTooLarge,
    /// The database cannot be reached: worth trying again in a few seconds.
    #[error(
        "Tessera is briefly unavailable: it cannot reach its database. Nothing was changed. Please try again in a few seconds."
    )]
    Unavailable,
    /// A rate limit: `retry_after` seconds until the next try may succeed.
    #[error("{message}")]
    TooManyRequests { retry_after: i64, message: String },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl AppError {
    /// The 429 answer to a rate limit: `Retry-After`, and `message` with how long to wait.
    pub fn too_many_requests(wait: RetryAfter, message: &str) -> AppError {
        let RetryAfter(seconds) = wait;
        AppError::TooManyRequests {
            retry_after: seconds,
            message: format!(
                "{message} Please wait {} and try again.",
                crate::words::duration_words(seconds)
            ),
        }
    }
}

impl From<FactorError> for AppError {
    fn from(e: FactorError) -> AppError {
        match e {
            FactorError::RateLimited { wait, message } => {
                AppError::too_many_requests(wait, message)
            }
            FactorError::Forbidden(message) => AppError::Forbidden(message.to_owned()),
            FactorError::Conflict(message) => AppError::Conflict(message.to_owned()),
            FactorError::Unexpected(e) => AppError::Unexpected(e),
        }
    }
}

impl From<crate::auth::passwords::PasswordError> for AppError {
    fn from(e: crate::auth::passwords::PasswordError) -> AppError {
        AppError::Unexpected(e.into())
    }
}

impl From<SessionError> for AppError {
    fn from(e: SessionError) -> AppError {
        AppError::Unexpected(e.into())
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> AppError {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "the database is unavailable");
            return AppError::Unavailable;
        }
        AppError::Unexpected(e.into())
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> AppError {
        AppError::from(DbError::Query(e))
    }
}

/// Seconds a client is asked to wait when the database is unavailable.
pub const UNAVAILABLE_RETRY_SECONDS: u32 = 5;

/// Whether `e`, an error of the session middleware (its store could not load or save the
/// session), comes from the database being unavailable. The middleware keeps the store's
/// error only as the cause of an opaque 500, readable through `Debug` alone.
pub fn is_session_store_unavailable(e: &actix_web::Error) -> bool {
    format!("{e:?}").contains(crate::session_store::STORE_UNAVAILABLE)
}

impl From<Invalid> for AppError {
    fn from(e: Invalid) -> AppError {
        AppError::BadRequest(e.0.to_owned())
    }
}

impl From<getrandom::Error> for AppError {
    fn from(e: getrandom::Error) -> AppError {
        AppError::Unexpected(anyhow::anyhow!("the OS RNG failed: {e}"))
    }
}

/// The words a user may see, carried from the error to the page renderer.
#[derive(Clone)]
pub(crate) struct PublicMessage(pub(crate) String);

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            AppError::Unexpected(e) => {
                tracing::error!(error.cause_chain = ?e, "request failed");
                default_message(StatusCode::INTERNAL_SERVER_ERROR).to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::new(self.status_code());
        response.extensions_mut().insert(PublicMessage(message));
        match self {
            AppError::TooManyRequests { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            AppError::Unavailable => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_SECONDS),
                );
            }
            _ => {}
        }
        response
    }
}

pub(crate) fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request could not be understood. Nothing was changed.",
        401 => "You need to sign in to see this page.",
        403 => "You do not have access to this page.",
        404 => "There is no page at this address.",
        405 => "This address does not accept that kind of request.",
        413 => "That form is too large. Nothing was changed.",
        429 => "Too many attempts. Wait a little and try again.",
        503 => {
            "Tessera is briefly unavailable. Nothing was changed. Please try again in a few seconds."
        }
        _ if status.is_server_error() => {
            "Something went wrong on our side, and nothing was changed. Please try again in a moment."
        }
        _ => "The request could not be completed.",
    }
}

pub fn wants_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.to_string())
        .unwrap_or_default()
}
