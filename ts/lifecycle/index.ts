// The lifecycles of Quark's records: work units and servers, as pure transitions, and the
// transaction-as-data helpers their writers use. No ZooKeeper here: every decision is testable alone.
export * from './transition.js';
export * from './work-unit.js';
export * from './server.js';
