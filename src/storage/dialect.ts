/** The few places where SQLite and PostgreSQL differ. Everything else is one Kysely query for both. */
import type { ColumnDefinitionBuilder, CreateTableBuilder } from 'kysely';

export type Engine = 'sqlite' | 'postgres';

/** An auto-incrementing integer primary key named `name`. */
export function addIdColumn<T extends string, C extends string>(
  engine: Engine,
  table: CreateTableBuilder<T, C>,
  name: string,
): CreateTableBuilder<T, C> {
  return engine === 'sqlite'
    ? table.addColumn(name, 'integer', (c: ColumnDefinitionBuilder) => c.primaryKey().autoIncrement())
    : table.addColumn(name, 'bigint', (c: ColumnDefinitionBuilder) =>
        c.primaryKey().generatedByDefaultAsIdentity(),
      );
}

/** True when `err` is a unique-constraint violation on either engine. */
export function isUniqueViolation(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown };
  return (
    e.code === '23505' || e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY'
  );
}
