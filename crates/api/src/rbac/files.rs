//! Policy files: the policies CSV and the conditional-policies YAML (multi-document), loaded at
//! start and, with `policyFileReload`, whenever they change. Their items belong to the
//! `csv-file` source: a reload adds what is new and removes what is gone, and leaves every other
//! source alone. An invalid line is skipped with a warning naming file and line; an invalid YAML
//! file keeps the last good conditions. Every reload is an audit record and a metric.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_authz::rbac::parse_policy_csv;
use portcullis_store::{Actor, NewCondition, PolicyRecord, SourceItems, Store, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::Rbac;
use crate::routes::permission::conditions::{ConditionBody, validate};

const SOURCE: &str = "csv-file";

/// What one reload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReloadReport {
    /// Warnings (skipped lines, unreadable files).
    pub warnings: Vec<String>,
    /// Whether the conditional-policies file was refused (the last good conditions stay).
    pub conditions_kept: bool,
}

fn actor() -> Actor {
    Actor {
        name: "policy-file".into(),
        ..Actor::system()
    }
}

/// Reads the CSV into the `csv-file` source.
async fn load_csv(store: &Store, path: &Path, report: &mut ReloadReport) -> Result<(), StoreError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => {
            report.warnings.push(format!(
                "{}: cannot read the policies file: {e}; its policies stay as they were",
                path.display()
            ));
            return Ok(());
        }
    };
    let file = path.display().to_string();
    let mut parsed = parse_policy_csv(&file, &text);
    report.warnings.append(&mut parsed.warnings);
    // Roles of other sources are changed only through them: their lines are skipped.
    let foreign: std::collections::HashMap<String, String> = store
        .list_roles()
        .await?
        .into_iter()
        .filter(|r| r.source != SOURCE)
        .map(|r| (r.name, r.source))
        .collect();
    let foreign_source = |role: &str| {
        foreign
            .get(role)
            .cloned()
            .or_else(|| (role == super::RBAC_ADMIN_ROLE).then(|| "configuration".to_owned()))
    };
    parsed
        .policies
        .retain(|p| match foreign_source(p.subject.as_str()) {
            Some(source) => {
                report.warnings.push(format!(
                    "{file}: '{p}' skipped: role {} belongs to the '{source}' source",
                    p.subject
                ));
                false
            }
            None => true,
        });
    parsed
        .members
        .retain(|m| match foreign_source(m.role.as_str()) {
            Some(source) => {
                report.warnings.push(format!(
                    "{file}: 'g, {}, {}' skipped: the role belongs to the '{source}' source",
                    m.member, m.role
                ));
                false
            }
            None => true,
        });
    let items = SourceItems {
        policies: parsed
            .policies
            .iter()
            .map(|p| PolicyRecord {
                subject: p.subject.as_str().to_owned(),
                permission: p.permission.clone(),
                action: p.action.as_str().to_owned(),
                effect: p.effect.as_str().to_owned(),
                source: SOURCE.into(),
            })
            .collect(),
        members: parsed
            .members
            .iter()
            .map(|m| (m.role.as_str().to_owned(), m.member.as_str().to_owned()))
            .collect(),
    };
    let diff = store.sync_source(&actor(), SOURCE, &items).await?;
    tracing::info!(file = %path.display(), ?diff, "policies file loaded");
    Ok(())
}

/// Reads the YAML into the `csv-file` conditions; any invalid document refuses the whole file.
async fn load_conditions(
    store: &Store,
    catalogue: &super::plugins::Catalogue,
    path: &Path,
    report: &mut ReloadReport,
) -> Result<(), StoreError> {
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => {
            report.warnings.push(format!(
                "{}: cannot read the conditional policies file: {e}; the last good conditions stay",
                path.display()
            ));
            report.conditions_kept = true;
            return Ok(());
        }
    };
    let mut conditions: Vec<NewCondition> = Vec::new();
    // Parse every document first: the YAML reader must not live across an await.
    let documents: Vec<Result<Value, String>> = yaml_serde::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).map_err(|e| e.to_string()))
        .collect();
    for (i, document) in documents.into_iter().enumerate() {
        let value = match document {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                report.warnings.push(format!(
                    "{}: document {}: not valid YAML: {e}; the last good conditions stay",
                    path.display(),
                    i + 1
                ));
                report.conditions_kept = true;
                return Ok(());
            }
        };
        let checked = serde_json::from_value::<ConditionBody>(value)
            .map_err(|e| e.to_string())
            .and_then(|body| validate(&body, catalogue));
        match checked {
            Ok(mut c) => {
                c.source = SOURCE.into();
                // As the reference: a condition needs a role of the files; one per role,
                // resource type and action.
                match store.get_role(&c.role).await? {
                    Some(role) if role.source == SOURCE => {}
                    Some(role) => {
                        report.warnings.push(format!(
                            "{}: document {}: role {} belongs to the '{}' source; skipped",
                            path.display(),
                            i + 1,
                            c.role,
                            role.source
                        ));
                        continue;
                    }
                    None => {
                        report.warnings.push(format!(
                            "{}: document {}: role {} does not exist; skipped",
                            path.display(),
                            i + 1,
                            c.role
                        ));
                        continue;
                    }
                }
                if let Some(other) = conditions.iter().find(|o| {
                    o.role == c.role
                        && o.resource_type == c.resource_type
                        && o.actions.iter().any(|a| c.actions.contains(a))
                }) {
                    report.warnings.push(format!(
                        "{}: document {}: role {} already has a condition for resource type '{}' and one of {:?}; skipped",
                        path.display(),
                        i + 1,
                        c.role,
                        c.resource_type,
                        other.actions
                    ));
                    continue;
                }
                conditions.push(c);
            }
            Err(e) => {
                report.warnings.push(format!(
                    "{}: document {}: {e}; the last good conditions stay",
                    path.display(),
                    i + 1
                ));
                report.conditions_kept = true;
                return Ok(());
            }
        }
    }
    store.sync_conditions(&actor(), SOURCE, &conditions).await?;
    Ok(())
}

/// Loads both files (those configured), records the result, and rebuilds the snapshot.
pub async fn reload(store: &Store, rbac: &Rbac) -> Result<ReloadReport, StoreError> {
    let mut report = ReloadReport::default();
    let settings = rbac.settings();
    // A file no longer configured takes what it granted with it.
    match &settings.policies_csv_file {
        Some(csv) => load_csv(store, csv, &mut report).await?,
        None => {
            store
                .sync_source(&actor(), SOURCE, &SourceItems::default())
                .await?;
        }
    }
    match &settings.conditional_policies_file {
        Some(yaml) => load_conditions(store, rbac.plugins(), yaml, &mut report).await?,
        None => {
            store.sync_conditions(&actor(), SOURCE, &[]).await?;
        }
    }
    if settings.policies_csv_file.is_none() && settings.conditional_policies_file.is_none() {
        // No files: nothing to report, only what a removed file left behind was cleared.
        return rbac.changed(store).await.map(|()| report);
    }
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    let result = if report.conditions_kept || !report.warnings.is_empty() {
        "warnings"
    } else {
        "ok"
    };
    metrics::counter!("portcullis_rbac_file_reloads_total", "result" => result).increment(1);
    let details = json!({ "warnings": report.warnings, "conditionsKept": report.conditions_kept });
    store
        .record_event(&actor(), "rbac.files.reload", result, details)
        .await?;
    rbac.changed(store).await?;
    Ok(report)
}

/// A digest of the files' contents (unreadable files count as empty).
async fn contents_digest(files: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        tokio::fs::read(f)
            .await
            .unwrap_or_default()
            .hash(&mut hasher);
    }
    hasher.finish()
}

/// Watches the files' folders and reloads after a change (debounced), until `stop`.
pub async fn watch(store: Store, rbac: std::sync::Arc<Rbac>, mut stop: watch::Receiver<bool>) {
    let files: Vec<PathBuf> = [
        &rbac.settings().policies_csv_file,
        &rbac.settings().conditional_policies_file,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    if files.is_empty() {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Any event in the folders counts: Kubernetes swaps a ConfigMap through `..data` links whose
    // events never name the file. A reload happens only when the contents changed.
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    };
    let mut last_seen = contents_digest(&files).await;
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the policy files; they will not be reloaded");
            return;
        }
    };
    use notify::Watcher;
    for folder in files.iter().filter_map(|f| f.parent()).map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    }) {
        if let Err(e) = watcher.watch(folder, notify::RecursiveMode::NonRecursive) {
            tracing::error!(error = %e, folder = %folder.display(), "cannot watch a policy file folder");
        }
    }
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            got = rx.recv() => {
                if got.is_none() {
                    return;
                }
                // Editors write in several steps: wait for quiet, then reload once.
                tokio::time::sleep(Duration::from_millis(200)).await;
                while rx.try_recv().is_ok() {}
                let now = contents_digest(&files).await;
                if now == last_seen {
                    continue;
                }
                last_seen = now;
                if let Err(e) = reload(&store, &rbac).await {
                    tracing::error!(error = %e, "reloading the policy files failed");
                }
            }
        }
    }
}
