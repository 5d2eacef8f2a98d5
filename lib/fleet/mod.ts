/**
 * The fleet view a server runs: reports received and checked, stored in
 * SQLite, summed into the fleet's state, and shown as a page.
 *
 * @module
 */

export { GlobalRate } from "./report_guards.ts";
export { fetchStatus, type FleetView, type FleetViewOptions, openFleetView } from "./service.ts";
export { convergence, type FleetSnapshot } from "./state.ts";
export { FleetStore, HISTORY_PER_HOST } from "./store.ts";
