"""Alembic environment. The hub runs migrations itself on start (`Store.migrate`), handing
over its own connection, so there is no alembic.ini and no URL here."""

from alembic import context

from hub.store.tables import SQLModel

connection = context.config.attributes["connection"]
# A town's store (issue 18) keeps its version table in its own schema, beside its tables.
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  version_table_schema=context.config.attributes.get("schema"))
with context.begin_transaction():
    context.run_migrations()
