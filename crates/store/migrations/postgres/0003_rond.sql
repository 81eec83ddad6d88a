-- Rönd-style roles and bindings of an org, kept as their JSON documents (validated by the API):
-- kind 'role' (roleId, name, description, permissions) or 'binding' (bindingId, subjects, groups,
-- roles, permissions, resource).

CREATE TABLE rond_documents (
    org_id      TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('role', 'binding')),
    doc_id      TEXT NOT NULL,
    document    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, kind, doc_id)
);
