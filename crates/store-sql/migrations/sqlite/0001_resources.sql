-- Every resource in one table. `mesh` is '' for global types (Mesh, Zone,
-- GlobalSecret) so that the primary key holds no NULL. `labels` and `body`
-- hold JSON objects; `version` counts updates from 1.
CREATE TABLE resources (
    type TEXT NOT NULL,
    mesh TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    labels TEXT NOT NULL,
    body TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    modification_time TEXT NOT NULL,
    PRIMARY KEY (type, mesh, name)
);

-- Deleting a Mesh deletes by mesh across every type.
CREATE INDEX resources_by_mesh ON resources (mesh);
