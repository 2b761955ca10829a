import type { MysqlPool, MysqlPoolConnection, MysqlQueryResult, MysqlStream, MysqlStreamOptions } from 'kysely';
import type { Pool, PoolConnection } from 'mysql2';
import type { DatabaseAvailability } from './availability.ts';
import { asDatabaseError } from './unreachable.ts';

/**
 * The mysql2 pool as Kysely sees it, with every wait bounded. mysql2 bounds a new connection's
 * handshake (`connectTimeout`) but not the wait for a pooled connection to come free, nor a query
 * on a server that stopped answering (SIGSTOP, a dead network path): without these a hung database
 * holds every request, /readyz included, for as long as it hangs. Failures that mean "the database
 * is not there" reach the caller as DatabaseUnavailableError (a 503), everything else unchanged.
 */
export interface PoolLimits {
  /** Longest wait for a connection from the pool, ms. */
  acquireMs: number;
  /** Longest a query may take, ms; 0: no limit (migrations: an ALTER on a big table takes its time). */
  queryMs: number;
}

const noop = () => {};

/** What a query without a callback returns: Kysely streams its rows. */
type Streamable = { stream: <T>(options: MysqlStreamOptions) => MysqlStream<T> };

/** Out of the pool, and its socket closed now rather than after a goodbye a frozen server never sends. */
function abandon(connection: PoolConnection): void {
  connection.destroy();
  (connection as unknown as { stream?: { destroy?: () => void } }).stream?.destroy?.();
}

export class BoundedPool implements MysqlPool {
  private readonly guarded = new WeakSet<PoolConnection>();

  constructor(
    private readonly raw: Pool,
    private readonly limits: PoolLimits,
    private readonly availability?: DatabaseAvailability,
    /** Whether end() closes the pool (false for a second view of a pool someone else closes). */
    private readonly owner = true,
  ) {}

  /** The same pool with other limits, closed by this one. */
  withLimits(limits: PoolLimits): BoundedPool {
    return new BoundedPool(this.raw, limits, this.availability, false);
  }

  /** The error the caller gets, noted for the availability report. */
  private failure(err: unknown): unknown {
    this.availability?.failed(err);
    return asDatabaseError(err);
  }

  getConnection(callback: (error: unknown, connection: MysqlPoolConnection) => void): void {
    let waiting = true;
    const timer = setTimeout(() => {
      waiting = false;
      const err = Object.assign(new Error(`no database connection came free within ${this.limits.acquireMs} ms`), { code: 'ATRIUM_POOL_TIMEOUT' });
      callback(this.failure(err), undefined as never);
    }, this.limits.acquireMs);
    this.raw.getConnection((err, connection) => {
      if (!waiting) {
        // The caller gave up; the connection goes back for the next one.
        connection?.release();
        return;
      }
      waiting = false;
      clearTimeout(timer);
      if (err) return callback(this.failure(err), undefined as never);
      this.guard(connection);
      callback(null, this.bounded(connection));
    });
  }

  end(callback: (error: unknown) => void): void {
    if (!this.owner) return callback(null);
    let done = false;
    const finish = (err: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      callback(err);
    };
    // A frozen server never acknowledges QUIT: closing waits for it no longer than for a connection.
    const timer = setTimeout(() => finish(null), this.limits.acquireMs);
    timer.unref();
    this.raw.end(finish);
  }

  /**
   * A connection that dies can emit 'error' more than once (the lost socket, then a command on it);
   * mysql2's pool listens only once, and an unheard 'error' would take the process down.
   */
  private guard(connection: PoolConnection): void {
    if (this.guarded.has(connection)) return;
    this.guarded.add(connection);
    connection.on('error', noop);
  }

  private bounded(connection: PoolConnection): MysqlPoolConnection {
    const { queryMs } = this.limits;
    const failure = (err: unknown) => this.failure(err);
    const availability = this.availability;
    const options = (sql: string) => (queryMs > 0 ? { sql, timeout: queryMs } : { sql });
    function query(sql: string, parameters: unknown[]): Streamable;
    function query(sql: string, parameters: unknown[], callback: (error: unknown, result: MysqlQueryResult) => void): void;
    function query(sql: string, parameters: unknown[], callback?: (error: unknown, result: MysqlQueryResult) => void) {
      if (!callback) return connection.query(options(sql), parameters) as unknown as Streamable;
      connection.query(options(sql), parameters, (err, result) => {
        if (err) {
          // A timed-out query is still running on a server that may wake up: this connection would
          // answer the next caller with its late result. It goes; the pool opens a fresh one.
          if ((err as { code?: string }).code === 'PROTOCOL_SEQUENCE_TIMEOUT') abandon(connection);
          callback(failure(err), undefined as never);
          return;
        }
        availability?.answered();
        callback(null, result as MysqlQueryResult);
      });
    }
    return { query, release: () => connection.release() };
  }
}
