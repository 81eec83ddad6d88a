//! `/api/permission/roles/conditions`: conditional policies of roles; the plugins' permissions
//! and condition rules.

use serde_json::{Value, json};

use crate::common::*;
use crate::support::*;

const CONDITIONS: &str = "/api/permission/roles/conditions";

/// The ids of the conditions `GET /api/permission/roles/conditions?<query>` lists.
async fn ids_where(s: &Server, query: &str) -> Vec<i64> {
    let list = s
        .get(s.admin(), &format!("{CONDITIONS}?{query}"))
        .await
        .json_with(200);
    list.as_array()
        .unwrap_or_else(|| panic!("an array for {query}: {list}"))
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn conditions_are_created_listed_read_replaced_and_deleted() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;
    assert_eq!(s.get(s.admin(), CONDITIONS).await.json_with(200), json!([]));

    // The seed's example.
    let id = add_condition(
        &s,
        condition(
            "role:default/test",
            &["read"],
            owner_rule(&["group:default/janus-authors"]),
        ),
    )
    .await;
    let stored = json!({
        "id": id,
        "result": "CONDITIONAL",
        "roleEntityRef": "role:default/test",
        "pluginId": "catalog",
        "resourceType": "catalog-entity",
        "permissionMapping": ["read"],
        "conditions": owner_rule(&["group:default/janus-authors"]),
    });
    assert_eq!(
        s.get(s.admin(), &format!("{CONDITIONS}/{id}"))
            .await
            .json_with(200),
        stored
    );
    assert_eq!(
        s.get(s.admin(), CONDITIONS).await.json_with(200),
        json!([stored])
    );

    // The seed's update example, with criteria.
    let criteria = json!({ "anyOf": [
        owner_rule(&["group:default/team-a"]),
        { "rule": "IS_ENTITY_KIND", "resourceType": "catalog-entity", "params": { "kinds": ["Group"] } },
    ] });
    let r = s
        .put(
            s.admin(),
            &format!("{CONDITIONS}/{id}"),
            condition(
                "role:default/test",
                &["read", "update", "delete"],
                criteria.clone(),
            ),
        )
        .await;
    empty(&r, 200);
    let updated = s
        .get(s.admin(), &format!("{CONDITIONS}/{id}"))
        .await
        .json_with(200);
    assert_eq!(updated["id"], id);
    assert_eq!(
        updated["permissionMapping"],
        json!(["read", "update", "delete"])
    );
    assert_eq!(updated["conditions"], criteria);

    // A second one with other actions; and one of another role.
    create_role(&s, s.admin(), "role:default/other", &["user:default/b"]).await;
    let second = add_condition(
        &s,
        condition(
            "role:default/test",
            &["use"],
            json!({ "not": { "rule": "HAS_LABEL", "resourceType": "catalog-entity", "params": { "label": "secret" } } }),
        ),
    )
    .await;
    let third = add_condition(
        &s,
        condition(
            "role:default/other",
            &["read"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;
    assert!(second > id && third > second, "{id} {second} {third}");
    let all = s.get(s.admin(), CONDITIONS).await.json_with(200);
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [id, second, third]);

    // Filters: role, plugin, resource type, and actions (a condition must cover every one).
    assert_eq!(
        ids_where(&s, "roleEntityRef=role:default/test").await,
        [id, second]
    );
    assert_eq!(
        ids_where(&s, "roleEntityRef=role:default/other").await,
        [third]
    );
    assert_eq!(
        ids_where(&s, "roleEntityRef=role:default/none").await,
        Vec::<i64>::new()
    );
    assert_eq!(ids_where(&s, "pluginId=catalog").await, [id, second, third]);
    assert_eq!(
        ids_where(&s, "pluginId=scaffolder").await,
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_where(&s, "resourceType=catalog-entity").await,
        [id, second, third]
    );
    assert_eq!(
        ids_where(&s, "resourceType=scaffolder-action").await,
        Vec::<i64>::new()
    );
    assert_eq!(ids_where(&s, "actions=read").await, [id, third]);
    assert_eq!(ids_where(&s, "actions=read,delete").await, [id]);
    assert_eq!(ids_where(&s, "actions=read,use").await, Vec::<i64>::new());
    assert_eq!(
        ids_where(
            &s,
            "roleEntityRef=role:default/other&actions=read&pluginId=catalog"
        )
        .await,
        [third]
    );
    let one = s
        .get(
            s.admin(),
            &format!("{CONDITIONS}?roleEntityRef=role:default/test&actions=use"),
        )
        .await
        .json_with(200);
    assert_eq!(one.as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one[0]["id"], second);
    assert_eq!(one[0]["permissionMapping"], json!(["use"]));

    // Delete.
    empty(
        &s.delete(s.admin(), &format!("{CONDITIONS}/{id}")).await,
        204,
    );
    let path = format!("{CONDITIONS}/{id}");
    let message = backstage(
        &s.get(s.admin(), &path).await,
        404,
        "NotFoundError",
        "GET",
        &path,
    );
    assert_eq!(message, format!("A condition with id {id} was not found"));
    backstage(
        &s.delete(s.admin(), &path).await,
        404,
        "NotFoundError",
        "DELETE",
        &path,
    );
    let r = s
        .put(
            s.admin(),
            &path,
            condition(
                "role:default/test",
                &["read"],
                owner_rule(&["$currentUser"]),
            ),
        )
        .await;
    backstage(&r, 404, "NotFoundError", "PUT", &path);
    let ids: Vec<i64> = s
        .get(s.admin(), CONDITIONS)
        .await
        .json_with(200)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second, third]);
}

#[tokio::test]
async fn a_condition_id_is_read_like_parse_int() {
    let s = Server::start().await;
    let body = || {
        condition(
            "role:default/test",
            &["read"],
            owner_rule(&["$currentUser"]),
        )
    };
    // Without leading digits: not a number at all.
    for id in ["abc", "x1", "-", ".5"] {
        let path = format!("{CONDITIONS}/{id}");
        assert_eq!(
            backstage(
                &s.get(s.admin(), &path).await,
                400,
                "InputError",
                "GET",
                &path
            ),
            "Id is not a valid number.",
            "{id}"
        );
        let r = s.put(s.admin(), &path, body()).await;
        assert_eq!(
            backstage(&r, 400, "InputError", "PUT", &path),
            "Id is not a valid number.",
            "{id}"
        );
        assert_eq!(
            backstage(
                &s.delete(s.admin(), &path).await,
                400,
                "InputError",
                "DELETE",
                &path
            ),
            "Id is not a valid number.",
            "{id}"
        );
    }
    // The leading digits count (as JavaScript's `parseInt`): `1x` and `1.5` name condition 1,
    // which does not exist yet.
    for id in ["1x", "1.5"] {
        let path = format!("{CONDITIONS}/{id}");
        assert_eq!(
            backstage(
                &s.get(s.admin(), &path).await,
                404,
                "NotFoundError",
                "GET",
                &path
            ),
            "A condition with id 1 was not found",
            "{id}"
        );
        let r = s.put(s.admin(), &path, body()).await;
        assert_eq!(
            backstage(&r, 404, "NotFoundError", "PUT", &path),
            "A condition with id 1 was not found",
            "{id}"
        );
        assert_eq!(
            backstage(
                &s.delete(s.admin(), &path).await,
                404,
                "NotFoundError",
                "DELETE",
                &path
            ),
            "A condition with id 1 was not found",
            "{id}"
        );
    }
    let path = format!("{CONDITIONS}/999");
    assert_eq!(
        backstage(
            &s.get(s.admin(), &path).await,
            404,
            "NotFoundError",
            "GET",
            &path,
        ),
        "A condition with id 999 was not found"
    );

    // Once the condition exists, trailing characters after its id still name it.
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;
    let id = add_condition(&s, body()).await;
    let stored = s
        .get(s.admin(), &format!("{CONDITIONS}/{id}"))
        .await
        .json_with(200);
    assert_eq!(stored["id"], id);
    assert_eq!(
        s.get(s.admin(), &format!("{CONDITIONS}/{id}x"))
            .await
            .json_with(200),
        stored
    );
    empty(
        &s.put(
            s.admin(),
            &format!("{CONDITIONS}/{id}.0"),
            condition(
                "role:default/test",
                &["read", "update"],
                owner_rule(&["$currentUser"]),
            ),
        )
        .await,
        200,
    );
    assert_eq!(
        s.get(s.admin(), &format!("{CONDITIONS}/{id}"))
            .await
            .json_with(200)["permissionMapping"],
        json!(["read", "update"])
    );
    empty(
        &s.delete(s.admin(), &format!("{CONDITIONS}/{id}abc")).await,
        204,
    );
    assert_eq!(s.get(s.admin(), CONDITIONS).await.json_with(200), json!([]));
}

#[tokio::test]
async fn invalid_conditions_get_400() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;
    let base = || {
        condition(
            "role:default/test",
            &["read"],
            owner_rule(&["$currentUser"]),
        )
    };
    let with = |key: &str, value: Value| {
        let mut body = base();
        body[key] = value;
        body
    };
    let cause = "Invalid conditional decision. Cause: ";
    let cases: Vec<(Value, String)> = vec![
        (
            with(
                "conditions",
                json!({ "rule": "NO_SUCH_RULE", "resourceType": "catalog-entity", "params": {} }),
            ),
            format!(
                "{cause}plugin 'catalog' has no condition rule 'NO_SUCH_RULE' for resource type 'catalog-entity'"
            ),
        ),
        (
            with(
                "conditions",
                json!({ "rule": "HAS_ACTION_ID", "resourceType": "scaffolder-action", "params": { "actionId": "x" } }),
            ),
            format!(
                "{cause}condition rule 'HAS_ACTION_ID' is for resource type 'scaffolder-action', not 'catalog-entity'"
            ),
        ),
        (
            // The seed's "nested conditions" example: two criteria at one level.
            with(
                "conditions",
                json!({
                    "anyOf": [owner_rule(&["group:default/team-a"])],
                    "not": { "rule": "IS_ENTITY_KIND", "resourceType": "catalog-entity", "params": { "kinds": ["Api"] } },
                }),
            ),
            format!(
                "{cause}conditions: has anyOf and not at the same level; put one criterion per level and nest the others"
            ),
        ),
        (
            with("permissionMapping", json!(["read", "write"])),
            format!(
                "{cause}'permissionMapping' has invalid value: 'write'. It should be one of: create, read, update, delete, use"
            ),
        ),
        (
            with("permissionMapping", json!(["read", "update", "read"])),
            format!(
                "{cause}'permissionMapping' must not contain duplicate permission action 'read'"
            ),
        ),
        (
            with("permissionMapping", json!([])),
            format!("{cause}'permissionMapping' array must be specified"),
        ),
        (
            with("result", json!("ALLOW")),
            format!("{cause}'result' field must be 'CONDITIONAL'"),
        ),
        (
            with("roleEntityRef", json!("user:default/a")),
            format!("{cause}Unsupported kind user. Supported value should be \"role\""),
        ),
        (
            with("roleEntityRef", json!("")),
            format!("{cause}'roleEntityRef' must be specified"),
        ),
        (
            with("pluginId", json!("")),
            format!("{cause}'pluginId' must be specified"),
        ),
        (
            with("resourceType", json!("")),
            format!("{cause}'resourceType' must be specified"),
        ),
        (
            with("pluginId", json!("scaffolder")),
            format!(
                "{cause}plugin 'scaffolder' has no condition rule 'IS_ENTITY_OWNER' for resource type 'catalog-entity'"
            ),
        ),
        (
            with("conditions", Value::Null),
            format!("{cause}'conditions' must be specified"),
        ),
        (
            with("conditions", json!({ "anyOf": [] })),
            format!("{cause}conditions.anyOf: must not be empty"),
        ),
        (
            with(
                "conditions",
                json!({ "rule": "IS_ENTITY_OWNER", "params": { "claims": [] } }),
            ),
            format!("{cause}conditions.resourceType: must be a non-empty string"),
        ),
    ];
    for (body, want) in cases {
        let r = s.post(s.admin(), CONDITIONS, body.clone()).await;
        assert_eq!(
            backstage(&r, 400, "InputError", "POST", CONDITIONS),
            want,
            "{body}"
        );
    }
    assert_eq!(s.get(s.admin(), CONDITIONS).await.json_with(200), json!([]));

    // The same checks on replacement.
    let id = add_condition(&s, base()).await;
    let path = format!("{CONDITIONS}/{id}");
    let r = s
        .put(
            s.admin(),
            &path,
            with(
                "conditions",
                json!({ "rule": "NO_SUCH_RULE", "resourceType": "catalog-entity" }),
            ),
        )
        .await;
    assert_contains(
        &backstage(&r, 400, "InputError", "PUT", &path),
        "has no condition rule 'NO_SUCH_RULE'",
    );
    assert_eq!(
        s.get(s.admin(), &path).await.json_with(200)["conditions"],
        owner_rule(&["$currentUser"])
    );
}

#[tokio::test]
async fn a_second_condition_for_the_same_role_type_and_action_conflicts() {
    let s = Server::start().await;
    create_role(&s, s.admin(), "role:default/test", &["user:default/a"]).await;
    create_role(&s, s.admin(), "role:default/other", &["user:default/a"]).await;
    let first = add_condition(
        &s,
        condition(
            "role:default/test",
            &["read", "update"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;

    let r = s
        .post(
            s.admin(),
            CONDITIONS,
            condition(
                "role:default/test",
                &["delete", "update"],
                owner_rule(&["group:default/x"]),
            ),
        )
        .await;
    assert_eq!(
        backstage(&r, 409, "ConflictError", "POST", CONDITIONS),
        "A condition with resource type 'catalog-entity' and permission 'update' has already been stored for role 'role:default/test'"
    );

    // Other actions, or another role: fine.
    let second = add_condition(
        &s,
        condition(
            "role:default/test",
            &["delete"],
            owner_rule(&["group:default/x"]),
        ),
    )
    .await;
    add_condition(
        &s,
        condition(
            "role:default/other",
            &["read"],
            owner_rule(&["$currentUser"]),
        ),
    )
    .await;

    // Replacing one so that it overlaps another conflicts; replacing it with itself does not.
    let path = format!("{CONDITIONS}/{second}");
    let r = s
        .put(
            s.admin(),
            &path,
            condition(
                "role:default/test",
                &["delete", "read"],
                owner_rule(&["group:default/x"]),
            ),
        )
        .await;
    assert_contains(
        &backstage(&r, 409, "ConflictError", "PUT", &path),
        "permission 'read' has already been stored for role 'role:default/test'",
    );
    empty(
        &s.put(
            s.admin(),
            &format!("{CONDITIONS}/{first}"),
            condition(
                "role:default/test",
                &["read", "update"],
                owner_rule(&["group:default/y"]),
            ),
        )
        .await,
        200,
    );
    assert_eq!(
        s.get(s.admin(), CONDITIONS)
            .await
            .json_with(200)
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn plugins_list_their_permissions_and_condition_rules() {
    let s = Server::start().await;
    let plugins = s
        .get(s.admin(), "/api/permission/plugins/policies")
        .await
        .json_with(200);
    assert_eq!(
        strings(&plugins, "pluginId"),
        [
            "catalog",
            "scaffolder",
            "permission",
            "kubernetes",
            "ocm",
            "topology",
            "bulk-import"
        ]
    );
    let catalog = &plugins[0]["policies"];
    assert_eq!(
        catalog,
        &json!([
            { "isResourced": true, "permission": "catalog-entity", "policy": "read" },
            { "isResourced": false, "permission": "catalog.entity.create", "policy": "create" },
            { "isResourced": true, "permission": "catalog-entity", "policy": "update" },
            { "isResourced": true, "permission": "catalog-entity", "policy": "delete" },
            { "isResourced": false, "permission": "catalog.location.read", "policy": "read" },
            { "isResourced": false, "permission": "catalog.location.create", "policy": "create" },
            { "isResourced": false, "permission": "catalog.location.delete", "policy": "delete" },
        ])
    );
    let permission = &plugins[2]["policies"];
    assert_eq!(
        permission,
        &json!([
            { "isResourced": true, "permission": "policy-entity", "policy": "read" },
            { "isResourced": true, "permission": "policy-entity", "policy": "create" },
            { "isResourced": true, "permission": "policy-entity", "policy": "update" },
            { "isResourced": true, "permission": "policy-entity", "policy": "delete" },
        ])
    );
    assert_eq!(
        plugins[6]["policies"],
        json!([{ "isResourced": false, "permission": "bulk.import", "policy": "use" }])
    );

    let rules = s
        .get(s.admin(), "/api/permission/plugins/condition-rules")
        .await
        .json_with(200);
    assert_eq!(strings(&rules, "pluginId"), ["catalog", "scaffolder"]);
    let catalog_rules = &rules[0]["rules"];
    assert_eq!(
        strings(catalog_rules, "name"),
        [
            "HAS_ANNOTATION",
            "HAS_LABEL",
            "HAS_METADATA",
            "HAS_SPEC",
            "IS_ENTITY_KIND",
            "IS_ENTITY_OWNER"
        ]
    );
    assert!(
        catalog_rules
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["resourceType"] == "catalog-entity")
    );
    assert_eq!(
        catalog_rules[5],
        json!({
            "name": "IS_ENTITY_OWNER",
            "description": "Allow entities owned by a specified claim",
            "resourceType": "catalog-entity",
            "paramsSchema": {
                "type": "object",
                "properties": { "claims": { "type": "array", "items": { "type": "string" }, "description": "List of claims to match at least one on within ownedBy" } },
                "required": ["claims"],
                "additionalProperties": false,
                "$schema": "http://json-schema.org/draft-07/schema#",
            },
        })
    );
    let scaffolder: Vec<(String, String)> = rules[1]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["resourceType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        scaffolder,
        [
            ("HAS_ACTION_ID".to_owned(), "scaffolder-action".to_owned()),
            ("HAS_TAG".to_owned(), "scaffolder-template".to_owned())
        ]
    );

    // A scaffolder condition as in the seed's Quay example is accepted.
    create_role(&s, s.admin(), "role:default/developer", &["user:default/a"]).await;
    add_condition(
        &s,
        json!({
            "result": "CONDITIONAL",
            "roleEntityRef": "role:default/developer",
            "pluginId": "scaffolder",
            "resourceType": "scaffolder-action",
            "permissionMapping": ["use"],
            "conditions": { "not": { "rule": "HAS_ACTION_ID", "resourceType": "scaffolder-action", "params": { "actionId": "quay:create-repository" } } },
        }),
    )
    .await;
}
