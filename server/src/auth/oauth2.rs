//! OAuth2 sign-in: the authorization-code flow with PKCE (S256) against GitHub, Google
//! or any OpenID Connect provider configured on an auth collection.

use sha2::{Digest, Sha256};

/// The PKCE challenge for `verifier`: base64url(SHA-256(verifier)), unpadded.
pub fn challenge(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

/// Unpadded base64url.
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The scopes asked of a provider.
pub fn scopes(provider: &str) -> &'static str {
    match provider {
        "github" => "read:user user:email",
        _ => "openid email profile",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_matches_rfc_7636() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
    }
}

/// A user as an OAuth2 provider described them. `email` is set only when the
/// provider says it is verified.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderUser {
    pub id: String,
    pub name: String,
    pub username: String,
    pub email: Option<String>,
    pub avatar_url: String,
    pub access_token: String,
    pub raw: serde_json::Value,
}

/// An HTTP client for providers: TLS by rustls with ring and the webpki roots, short
/// timeouts, no redirects.
///
/// Fails only if TLS cannot be set up.
pub fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls()?)
        .timeout(std::time::Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Basalt/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// TLS for Basalt's outgoing HTTP (providers, functions' outbound requests): rustls
/// with ring and the webpki roots.
///
/// Fails only if rustls refuses the protocol versions (a bug).
pub fn tls() -> Result<rustls::ClientConfig, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Trade an authorization `code` (with its PKCE `verifier`) for an access token and
/// read the user it belongs to.
///
/// Fails with a message for the log when the provider refuses or answers oddly.
pub async fn exchange(
    client: &reqwest::Client,
    provider: &crate::schema::model::OAuth2Provider,
    code: &str,
    verifier: &str,
    redirect_url: &str,
) -> Result<ProviderUser, String> {
    use serde_json::Value;
    let response = client
        .post(&provider.token_url)
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_url),
            ("client_id", provider.client_id.as_str()),
            ("client_secret", provider.client_secret.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .map_err(|e| format!("token request: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("token response ({status}): {e}"))?;
    let access_token = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("no access token ({status}): {body}"))?
        .to_owned();
    let get = |url: &str| {
        client
            .get(url)
            .bearer_auth(&access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
    };
    let response = get(&provider.user_info_url)
        .await
        .map_err(|e| format!("user info request: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("user info: {}", response.status()));
    }
    let raw: Value = response
        .json()
        .await
        .map_err(|e| format!("user info response: {e}"))?;
    let text = |key: &str| match raw.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let mut user = if provider.name == "github" {
        ProviderUser {
            id: text("id"),
            name: text("name"),
            username: text("login"),
            email: None,
            avatar_url: text("avatar_url"),
            access_token: access_token.clone(),
            raw: raw.clone(),
        }
    } else {
        // OpenID Connect claims (Google and any other provider).
        let verified = matches!(raw.get("email_verified"), Some(Value::Bool(true)))
            || raw.get("email_verified").and_then(Value::as_str) == Some("true");
        ProviderUser {
            id: text("sub"),
            name: text("name"),
            username: text("preferred_username"),
            email: verified.then(|| text("email")).filter(|e| !e.is_empty()),
            avatar_url: text("picture"),
            access_token: access_token.clone(),
            raw: raw.clone(),
        }
    };
    if provider.name == "github" {
        // GitHub lists emails separately, each with its verified flag.
        let url = format!("{}/emails", provider.user_info_url.trim_end_matches('/'));
        if let Ok(response) = get(&url).await
            && let Ok(Value::Array(emails)) = response.json::<Value>().await
        {
            user.email = emails
                .iter()
                .filter(|e| e.get("verified") == Some(&Value::Bool(true)))
                .max_by_key(|e| e.get("primary") == Some(&Value::Bool(true)))
                .and_then(|e| e.get("email").and_then(Value::as_str))
                .map(str::to_lowercase);
        }
    }
    if user.id.is_empty() {
        return Err(format!("the provider named no user id: {raw}"));
    }
    user.email = user.email.map(|e| e.to_lowercase());
    Ok(user)
}
