//! The one schema both backends share, in the types `#[derive(MultiConnection)]` supports
//! (Text, BigInt, Bool): no Binary (ciphertexts are base64 text), no native timestamps
//! (times are Unix seconds).

diesel::table! {
    workspaces (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        created_at -> BigInt,
        require_2fa_since -> Nullable<BigInt>,
        require_2fa_deadline -> Nullable<BigInt>,
        grace_days -> BigInt,
        require_keys_since -> Nullable<BigInt>,
        require_keys_deadline -> Nullable<BigInt>,
    }
}

diesel::table! {
    exemptions (user_id) {
        user_id -> Text,
        until -> BigInt,
        reason -> Text,
        granted_by -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        workspace_id -> Text,
        email -> Text,
        name -> Text,
        role -> Text,
        is_staff -> Bool,
        password_hash -> Text,
        created_at -> BigInt,
        last_sign_in_at -> Nullable<BigInt>,
        session_epoch -> BigInt,
        two_factor_reset_at -> Nullable<BigInt>,
        second_factor_failures -> BigInt,
        second_factor_locked_until -> Nullable<BigInt>,
        deactivated_at -> Nullable<BigInt>,
        is_demo -> Bool,
        authenticator_on -> Bool,
        security_key_count -> BigInt,
    }
}

diesel::table! {
    totp_credentials (user_id) {
        user_id -> Text,
        secret_ciphertext -> Text,
        key_id -> Text,
        last_step -> BigInt,
        enabled_at -> BigInt,
    }
}

diesel::table! {
    pending_enrolments (user_id) {
        user_id -> Text,
        secret_ciphertext -> Text,
        key_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        session_binding -> Text,
    }
}

diesel::table! {
    recovery_codes (id) {
        id -> Text,
        user_id -> Text,
        code_hash -> Text,
        created_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        created_at -> BigInt,
        workspace_id -> Nullable<Text>,
        actor_id -> Nullable<Text>,
        actor_label -> Text,
        subject_id -> Nullable<Text>,
        subject_label -> Nullable<Text>,
        kind -> Text,
        ip -> Nullable<Text>,
        detail -> Text,
        actor_kind -> Text,
    }
}

diesel::table! {
    rate_limits (key) {
        key -> Text,
        hits -> Text,
        until_ms -> BigInt,
    }
}

diesel::table! {
    setup_tokens (token_hash) {
        token_hash -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    app_secrets (name) {
        name -> Text,
        value -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    mail_outbox (id) {
        id -> Text,
        kind -> Text,
        recipient -> Text,
        subject -> Text,
        body_text -> Text,
        body_html -> Text,
        created_at -> BigInt,
        attempts -> BigInt,
        next_attempt_at -> BigInt,
        claimed_until -> Nullable<BigInt>,
        sent_at -> Nullable<BigInt>,
        failed_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    invites (id) {
        id -> Text,
        workspace_id -> Text,
        email -> Text,
        role -> Text,
        token_hash -> Text,
        invited_by -> Nullable<Text>,
        invited_by_label -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    password_resets (user_id) {
        user_id -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    security_keys (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        credential_id -> Text,
        credential -> Text,
        passwordless -> Bool,
        sign_count -> BigInt,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webauthn_ceremonies (session_binding, purpose) {
        session_binding -> Text,
        purpose -> Text,
        user_id -> Nullable<Text>,
        state -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    member_counts (workspace_id) {
        workspace_id -> Text,
        members -> BigInt,
        not_enrolled -> BigInt,
        active -> BigInt,
        active_not_enrolled -> BigInt,
        active_without_key -> BigInt,
    }
}

diesel::joinable!(users -> workspaces (workspace_id));
diesel::joinable!(totp_credentials -> users (user_id));
diesel::joinable!(pending_enrolments -> users (user_id));
diesel::joinable!(recovery_codes -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(exemptions -> users (user_id));
diesel::joinable!(invites -> workspaces (workspace_id));
diesel::joinable!(password_resets -> users (user_id));
diesel::joinable!(security_keys -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    workspaces,
    exemptions,
    users,
    totp_credentials,
    pending_enrolments,
    recovery_codes,
    rate_limits,
    sessions,
    audit_events,
    setup_tokens,
    app_secrets,
    mail_outbox,
    invites,
    password_resets,
    security_keys,
    webauthn_ceremonies,
    member_counts,
);
