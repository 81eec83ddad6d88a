//! Seed 002 section 4.1: every status code the RBAC REST API answers, errors in the Backstage
//! shape.

use reqwest::Method;
use serde_json::json;

use crate::common::*;
use crate::support::*;

#[tokio::test]
async fn every_status_code_of_the_reference_with_the_backstage_error_shape() {
    let s = Server::start().await;
    let (_, bot) = s.machine("default", "bot@example.com", "member").await;
    let roles = "/api/permission/roles";

    // 201 Created
    let r = s
        .post(
            s.admin(),
            roles,
            json!({ "memberReferences": ["group:default/example"], "name": "role:default/test", "metadata": { "description": "This is a test role" } }),
        )
        .await;
    empty(&r, 201);
    // 200 OK
    let list = s.get(s.admin(), roles).await.json_with(200);
    assert_eq!(strings(&list, "name"), ["role:default/test"]);
    // 400 Bad Request
    let r = s
        .post(
            s.admin(),
            roles,
            json!({ "memberReferences": ["user:default/a"] }),
        )
        .await;
    assert_eq!(
        backstage(&r, 400, "InputError", "POST", roles),
        "'name' field must not be empty"
    );
    // 401 Unauthorized
    let r = s.call(Method::GET, roles, None, None).await;
    backstage(&r, 401, "AuthenticationError", "GET", roles);
    // 403 Forbidden
    let r = s.get(&bot, roles).await;
    backstage(&r, 403, "NotAllowedError", "GET", roles);
    // 404 Not Found
    let path = "/api/permission/roles/role/default/missing";
    let r = s.get(s.admin(), path).await;
    assert_eq!(
        backstage(&r, 404, "NotFoundError", "GET", path),
        "role:default/missing was not found"
    );
    // 409 Conflict: the role exists with every member given.
    let r = s
        .post(
            s.admin(),
            roles,
            json!({ "memberReferences": ["group:default/example"], "name": "role:default/test" }),
        )
        .await;
    assert_contains(
        &backstage(&r, 409, "ConflictError", "POST", roles),
        "role:default/test",
    );
    // 204 No Content
    let r = s
        .delete(s.admin(), "/api/permission/roles/role/default/test")
        .await;
    empty(&r, 204);
    assert_eq!(s.get(s.admin(), roles).await.json_with(200), json!([]));

    // The query string is part of the request URL.
    let url = "/api/permission/roles/role/default/test?memberReferences=user:default/a";
    backstage(
        &s.delete(s.admin(), url).await,
        404,
        "NotFoundError",
        "DELETE",
        url,
    );
    // Other APIs keep our own shape.
    s.get(s.admin(), "/api/v1/orgs/nope")
        .await
        .error(404, "not_found");
}

#[tokio::test]
async fn an_unknown_path_under_the_permission_api_answers_in_the_backstage_shape() {
    let s = Server::start().await;
    for path in [
        "/api/permission/nope",
        "/api/permission/roles/role/default",
        "/api/licensed-users-info/nope",
    ] {
        let r = s.get(s.admin(), path).await;
        backstage(&r, 404, "NotFoundError", "GET", path);
    }
}

#[tokio::test]
async fn a_method_not_allowed_under_the_permission_api_answers_in_the_backstage_shape() {
    let s = Server::start().await;
    for (method, path) in [
        (Method::PATCH, "/api/permission/roles"),
        (Method::DELETE, "/api/permission/policies"),
        (Method::GET, "/api/permission/authorize"),
    ] {
        let r = s
            .call(method.clone(), path, Some(s.admin()), Some(&json!({})))
            .await;
        backstage(&r, 405, "Error", method.as_str(), path);
    }
}
