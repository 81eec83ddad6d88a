//! The security settings of an org, their defaults (seed 001) and their bounds.

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Security settings of one org. Defaults follow seed 001.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
// A value left out (or set to null in a merge patch) is its default.
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OrgSettings {
    /// Every local user must enroll TOTP MFA.
    pub mfa_required: bool,
    /// Automatic lockout after repeated failed logins.
    pub lockout: LockoutSettings,
    /// Logout after a period without activity.
    pub idle_logout: IdleLogoutSettings,
    /// Absolute lifetime of a login session, in hours.
    pub session_lifetime_hours: u32,
    /// Shortest password accepted.
    pub password_min_length: u32,
    /// How long a temporary password stays valid, in hours.
    pub temp_password_ttl_hours: u32,
    /// How long a password-reset link stays valid, in hours.
    pub reset_link_ttl_hours: u32,
}

/// Lockout after `max_attempts` failed logins within `window_minutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LockoutSettings {
    /// Whether lockout is on.
    pub enabled: bool,
    /// Failed logins that lock the account.
    pub max_attempts: u32,
    /// The window the failures are counted in, and how long the lock lasts.
    pub window_minutes: u32,
}

/// Logout after `minutes` without activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IdleLogoutSettings {
    /// Whether idle logout is on.
    pub enabled: bool,
    /// Minutes of inactivity before the session ends.
    pub minutes: u32,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 5,
            window_minutes: 15,
        }
    }
}

impl Default for IdleLogoutSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            minutes: 60,
        }
    }
}

impl Default for OrgSettings {
    fn default() -> Self {
        Self {
            mfa_required: false,
            lockout: LockoutSettings::default(),
            idle_logout: IdleLogoutSettings::default(),
            session_lifetime_hours: 24,
            password_min_length: 8,
            temp_password_ttl_hours: 72,
            reset_link_ttl_hours: 72,
        }
    }
}

fn within(field: &str, value: u32, min: u32, max: u32) -> Result<(), ModelError> {
    if value < min || value > max {
        return Err(ModelError::new(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ));
    }
    Ok(())
}

impl OrgSettings {
    /// Checks every value against its bounds.
    pub fn validate(&self) -> Result<(), ModelError> {
        within(
            "settings.lockout.maxAttempts",
            self.lockout.max_attempts,
            1,
            100,
        )?;
        within(
            "settings.lockout.windowMinutes",
            self.lockout.window_minutes,
            1,
            1440,
        )?;
        within(
            "settings.idleLogout.minutes",
            self.idle_logout.minutes,
            1,
            1440,
        )?;
        within(
            "settings.sessionLifetimeHours",
            self.session_lifetime_hours,
            1,
            720,
        )?;
        within(
            "settings.passwordMinLength",
            self.password_min_length,
            8,
            128,
        )?;
        within(
            "settings.tempPasswordTtlHours",
            self.temp_password_ttl_hours,
            1,
            720,
        )?;
        within(
            "settings.resetLinkTtlHours",
            self.reset_link_ttl_hours,
            1,
            720,
        )?;
        Ok(())
    }

    /// The settings that bind a user who belongs to several orgs: the strictest value of each
    /// (MFA if any org requires it, the fewest attempts, the shortest lifetimes, the longest
    /// minimum password). `None` when there are no orgs.
    pub fn strictest<'a>(all: impl IntoIterator<Item = &'a OrgSettings>) -> Option<OrgSettings> {
        let mut all = all.into_iter();
        let mut out = all.next()?.clone();
        for s in all {
            out.mfa_required |= s.mfa_required;
            if s.lockout.enabled {
                if out.lockout.enabled {
                    out.lockout.max_attempts = out.lockout.max_attempts.min(s.lockout.max_attempts);
                    out.lockout.window_minutes =
                        out.lockout.window_minutes.max(s.lockout.window_minutes);
                } else {
                    out.lockout = s.lockout.clone();
                }
            }
            if s.idle_logout.enabled {
                if out.idle_logout.enabled {
                    out.idle_logout.minutes = out.idle_logout.minutes.min(s.idle_logout.minutes);
                } else {
                    out.idle_logout = s.idle_logout.clone();
                }
            }
            out.session_lifetime_hours = out.session_lifetime_hours.min(s.session_lifetime_hours);
            out.password_min_length = out.password_min_length.max(s.password_min_length);
            out.temp_password_ttl_hours =
                out.temp_password_ttl_hours.min(s.temp_password_ttl_hours);
            out.reset_link_ttl_hours = out.reset_link_ttl_hours.min(s.reset_link_ttl_hours);
        }
        Some(out)
    }

    /// Applies a JSON merge patch (RFC 7396) to these settings and validates the result, so a
    /// client sends only the values it changes; a `null` puts a value back to its default.
    pub fn merged(&self, patch: &serde_json::Value) -> Result<Self, ModelError> {
        if !patch.is_object() {
            return Err(ModelError::new("settings", "must be a JSON object"));
        }
        let mut current =
            serde_json::to_value(self).map_err(|e| ModelError::new("settings", e.to_string()))?;
        merge_patch(&mut current, patch);
        // The path of a value of the wrong type, for the message (`settings.lockout.maxAttempts`).
        let merged: Self = serde_path_to_error::deserialize(current).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "settings".to_owned()
            } else {
                format!("settings.{path}")
            };
            ModelError::new(field, e.into_inner().to_string())
        })?;
        merged.validate()?;
        Ok(merged)
    }
}

fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else {
                    merge_patch(
                        t.entry(key.clone()).or_insert(serde_json::Value::Null),
                        value,
                    );
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_the_seed() {
        let s = OrgSettings::default();
        assert!(!s.mfa_required);
        assert_eq!((s.lockout.max_attempts, s.lockout.window_minutes), (5, 15));
        assert_eq!(s.idle_logout.minutes, 60);
        assert_eq!(s.session_lifetime_hours, 24);
        assert_eq!(s.password_min_length, 8);
        assert_eq!(s.temp_password_ttl_hours, 72);
        s.validate().unwrap();
    }

    #[test]
    fn the_strictest_settings_of_several_orgs_bind() {
        let lax = OrgSettings::default();
        let strict = lax
            .merged(
                &json!({"mfaRequired": true, "lockout": {"maxAttempts": 3, "windowMinutes": 30},
                "idleLogout": {"minutes": 10}, "passwordMinLength": 12, "sessionLifetimeHours": 8}),
            )
            .unwrap();
        let off = lax
            .merged(&json!({"lockout": {"enabled": false}, "idleLogout": {"enabled": false}}))
            .unwrap();
        let s = OrgSettings::strictest([&off, &strict, &lax]).unwrap();
        assert!(s.mfa_required);
        assert!(s.lockout.enabled && s.idle_logout.enabled);
        assert_eq!((s.lockout.max_attempts, s.lockout.window_minutes), (3, 30));
        assert_eq!(s.idle_logout.minutes, 10);
        assert_eq!(s.password_min_length, 12);
        assert_eq!(s.session_lifetime_hours, 8);
        assert_eq!(OrgSettings::strictest([&off]).unwrap(), off);
        assert!(OrgSettings::strictest([]).is_none());
    }

    #[test]
    fn merge_patch_changes_only_what_is_sent() {
        let s = OrgSettings::default();
        let m = s
            .merged(&json!({"mfaRequired": true, "lockout": {"maxAttempts": 3}}))
            .unwrap();
        assert!(m.mfa_required);
        assert_eq!(m.lockout.max_attempts, 3);
        assert_eq!(m.lockout.window_minutes, 15);
        assert_eq!(m.session_lifetime_hours, 24);
    }

    #[test]
    fn merge_patch_refuses_bad_values_naming_the_field() {
        let s = OrgSettings::default();
        let e = s.merged(&json!({"passwordMinLength": 4})).unwrap_err();
        assert_eq!(e.field, "settings.passwordMinLength");
        let e = s.merged(&json!({"mfaRequried": true})).unwrap_err();
        assert!(e.message.contains("mfaRequried"), "{e}");
        let e = s
            .merged(&json!({"lockout": {"enabled": "yes"}}))
            .unwrap_err();
        assert!(e.message.contains("invalid type"), "{e}");
        assert_eq!(e.field, "settings.lockout.enabled");
        let e = s
            .merged(&json!({"lockout": {"maxAttempts": -1}}))
            .unwrap_err();
        assert_eq!(e.field, "settings.lockout.maxAttempts");
        assert!(s.merged(&json!([1])).is_err());
    }

    #[test]
    fn a_null_in_the_patch_puts_the_default_back() {
        let changed = OrgSettings::default()
            .merged(
                &json!({"mfaRequired": true, "lockout": {"maxAttempts": 3, "windowMinutes": 30}}),
            )
            .unwrap();
        let back = changed
            .merged(&json!({"mfaRequired": null, "lockout": {"maxAttempts": null}}))
            .unwrap();
        assert!(!back.mfa_required);
        assert_eq!(back.lockout.max_attempts, 5);
        assert_eq!(
            back.lockout.window_minutes, 30,
            "what the patch leaves out stays"
        );
        let whole = changed.merged(&json!({"lockout": null})).unwrap();
        assert_eq!(whole.lockout, LockoutSettings::default());
    }
}
