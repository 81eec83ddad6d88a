//! Policy files: loaded at start, reloaded while the server runs; REST items stay, a broken line
//! is skipped and reported, an invalid conditional-policies file keeps the last good conditions.

use std::time::{Duration, Instant};

use portcullis_api::{RbacSettings, ServerConfig};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "policy-files-test-admin-key-0123456789";

const CSV: &str = "\
p, role:default/readers, catalog-entity, read, allow
g, user:default/bot, role:default/readers
";

const YAML: &str = "\
result: CONDITIONAL
roleEntityRef: role:default/readers
pluginId: catalog
resourceType: catalog-entity
permissionMapping: [delete]
conditions:
  rule: IS_ENTITY_OWNER
  resourceType: catalog-entity
  params:
    claims: [$currentUser]
";

struct Harness {
    http: reqwest::Client,
    base: String,
}

impl Harness {
    /// Decides `catalog.entity.<action>` for user:default/bot through the batch check.
    async fn decide(&self, action: &str) -> String {
        let body = json!({"items": [{"principal": "user:default/bot", "permission": {"type": "resource", "name": format!("catalog.entity.{action}"), "resourceType": "catalog-entity", "attributes": {"action": action}}}]});
        let answer: Value = self
            .http
            .post(format!("{}/api/v1/check", self.base))
            .bearer_auth(ADMIN_KEY)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["items"][0]["result"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn until(&self, action: &str, want: &str) {
        let started = Instant::now();
        loop {
            let got = self.decide(action).await;
            if got == want {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{action}: still {got}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn reload_records(&self) -> Vec<Value> {
        let audit: Value = self
            .http
            .get(format!(
                "{}/api/v1/audit?action=rbac.files.reload&limit=50",
                self.base
            ))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        audit["items"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test]
async fn policy_files_load_and_reload_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("rbac-policy.csv");
    let yaml = dir.path().join("rbac-conditional-policies.yaml");
    std::fs::write(&csv, CSV).unwrap();
    std::fs::write(&yaml, YAML).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}/p.db", dir.path().display()),
        admin_email: "admin@localhost".into(),
        admin_api_key: Some(ADMIN_KEY.into()),
        activity_flush_interval: Duration::from_millis(100),
        tls: None,
        gateway: Default::default(),
        auth: Default::default(),
        rbac: RbacSettings {
            policies_csv_file: Some(csv.clone()),
            conditional_policies_file: Some(yaml.clone()),
            policy_file_reload: true,
            ..Default::default()
        },
    };
    let running = portcullis_api::start(config).await.unwrap();
    let h = Harness {
        http: reqwest::Client::new(),
        base: format!("http://{}", running.addr),
    };

    // Loaded at start.
    assert_eq!(h.decide("read").await, "ALLOW");
    assert_eq!(h.decide("delete").await, "CONDITIONAL");
    assert_eq!(h.decide("update").await, "DENY");
    let roles: Value = h
        .http
        .get(format!(
            "{}/api/permission/roles/role/default/readers",
            h.base
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(roles[0]["metadata"]["source"], "csv-file");

    // A REST policy, which no file reload may touch.
    let created = h
        .http
        .post(format!("{}/api/permission/policies", h.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!([{"entityReference": "user:default/bot", "permission": "catalog.entity.refresh", "policy": "update", "effect": "allow"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Edit the CSV: one line gone, one new, one broken.
    std::fs::write(&csv, "g, user:default/bot, role:default/readers\np, role:default/readers, catalog-entity, delete, deny\np, role:default/readers, x, write, allow\n").unwrap();
    h.until("read", "DENY").await;
    let refresh = json!({"items": [{"principal": "user:default/bot", "permission": {"type": "resource", "name": "catalog.entity.refresh", "resourceType": "catalog-entity", "attributes": {"action": "update"}}}]});
    let answer: Value = h
        .http
        .post(format!("{}/api/v1/check", h.base))
        .bearer_auth(ADMIN_KEY)
        .json(&refresh)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["items"][0]["result"], "ALLOW",
        "the REST policy on the permission name stays"
    );
    let policies: Value = h
        .http
        .get(format!("{}/api/permission/policies", h.base))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sources: Vec<(String, String)> = policies
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["entityReference"] != "role:default/rbac_admin")
        .map(|p| {
            (
                p["permission"].as_str().unwrap().to_owned(),
                p["metadata"]["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        sources.contains(&("catalog.entity.refresh".into(), "rest".into())),
        "{sources:?}"
    );
    assert!(
        sources.contains(&("catalog-entity".into(), "csv-file".into())),
        "{sources:?}"
    );
    assert_eq!(sources.len(), 2, "the removed line is gone: {sources:?}");
    let records = h.reload_records().await;
    let warned = records.iter().any(|r| {
        r["details"]["warnings"]
            .to_string()
            .contains("rbac-policy.csv:3: 'policy' has invalid value: 'write'")
    });
    assert!(
        warned,
        "the broken line is reported with file and line: {records:?}"
    );

    // An invalid conditional-policies file keeps the last good conditions.
    std::fs::write(&yaml, "result: CONDITIONAL\nroleEntityRef: role:default/readers\npluginId: catalog\nresourceType: catalog-entity\npermissionMapping: [delete]\nconditions:\n  rule: NO_SUCH_RULE\n  resourceType: catalog-entity\n").unwrap();
    let started = Instant::now();
    loop {
        let records = h.reload_records().await;
        if records
            .iter()
            .any(|r| r["details"]["conditionsKept"] == true)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no reload recorded the refused file: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        h.decide("delete").await,
        "CONDITIONAL",
        "the last good conditions stay"
    );
    let metrics = h
        .http
        .get(format!("{}/metrics", h.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_rbac_file_reloads_total"),
        "reloads are counted"
    );
    running.shutdown().await;
}
