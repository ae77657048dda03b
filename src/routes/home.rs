use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::layout;
use crate::auth::session::TypedSession;
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::guard::{MaybeSignedIn, SignedIn, Stage, see_other};
use crate::web::views::{Layout, render};

#[derive(Template)]
#[template(path = "account/home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub name: String,
    pub workspace: String,
    pub totp_enabled: bool,
}

pub async fn index_get(who: MaybeSignedIn) -> HttpResponse {
    match who.0.map(|i| i.stage) {
        Some(Stage::Full) => see_other("/home"),
        Some(Stage::PasswordVerified) => see_other("/login/2fa"),
        Some(Stage::MustEnrol) => see_other("/account/2fa/setup"),
        Some(Stage::MustAddKey) => see_other(crate::web::guard::KEY_ENROLMENT_PATH),
        None => see_other("/login"),
    }
}

pub async fn home_get(
    SignedIn(account): SignedIn,
    session: TypedSession,
) -> Result<HttpResponse, AppError> {
    let page = HomePage {
        layout: layout(&session, "Home", Some(&account))?,
        name: account.user.name.clone(),
        workspace: account.workspace.name.clone(),
        totp_enabled: account.factors.any(),
    };
    render(&page, StatusCode::OK)
}

/// `200 ok` when the database answers, `503` when it does not.
pub async fn healthz_get(state: web::Data<AppState>) -> HttpResponse {
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ok"),
        Err(e) => {
            tracing::error!(error = %e, "health check: the database does not answer");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("database unavailable")
        }
    }
}
