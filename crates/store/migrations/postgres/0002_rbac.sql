-- RBAC with Backstage semantics: roles with metadata, their members (g lines), permission
-- policies (p lines) and conditional policies. Every item carries the source it may be changed
-- through: configuration, rest, csv-file or legacy.

CREATE TABLE rbac_roles (
    name           TEXT PRIMARY KEY,
    source         TEXT NOT NULL CHECK (source IN ('configuration', 'rest', 'csv-file', 'legacy')),
    description    TEXT,
    owner          TEXT,
    author         TEXT,
    modified_by    TEXT,
    created_at     BIGINT NOT NULL,
    last_modified  BIGINT NOT NULL
);

CREATE TABLE rbac_role_members (
    role_name  TEXT NOT NULL REFERENCES rbac_roles (name) ON DELETE CASCADE ON UPDATE CASCADE,
    member     TEXT NOT NULL,
    PRIMARY KEY (role_name, member)
);

CREATE TABLE rbac_policies (
    id          BIGSERIAL PRIMARY KEY,
    subject     TEXT NOT NULL,
    permission  TEXT NOT NULL,
    action      TEXT NOT NULL,
    effect      TEXT NOT NULL CHECK (effect IN ('allow', 'deny')),
    source      TEXT NOT NULL CHECK (source IN ('configuration', 'rest', 'csv-file', 'legacy')),
    UNIQUE (subject, permission, action, effect)
);
CREATE INDEX rbac_policies_subject ON rbac_policies (subject);

CREATE TABLE rbac_conditions (
    id             BIGSERIAL PRIMARY KEY,
    role_name      TEXT NOT NULL,
    plugin_id      TEXT NOT NULL,
    resource_type  TEXT NOT NULL,
    actions        TEXT NOT NULL,
    conditions     TEXT NOT NULL,
    source         TEXT NOT NULL CHECK (source IN ('configuration', 'rest', 'csv-file', 'legacy'))
);
CREATE INDEX rbac_conditions_role ON rbac_conditions (role_name);
