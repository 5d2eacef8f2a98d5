/**
 * The fleet file, parsed once into types: every key declared once (its
 * type, default, flag and docs), {@linkcode Fleet} and its hosts, flag
 * overrides, cross-checks, the secrets' file checks, the cached copy a
 * client falls back on, and what the proxy and renderers derive from it (the
 * backends, the rendered-by header). Also the roles and the options every
 * command runs with.
 *
 * @module
 */

export { closest } from "./paths.ts";
export { rsyncdValue } from "./rsyncd_value.ts";
export { type BackendSpec, backendSpecs, referenceSpec } from "./backends.ts";
export {
  downstreamsOf,
  findServer,
  type Fleet,
  loadFleet,
  parseFleet,
  type ProxyConfig,
  type PublisherHost,
  type PushConfig,
  type ReleaseConfig,
  selectServer,
  type ServerHost,
  servers,
  writersOf,
} from "./config.ts";
export { fleetFor } from "./fleet_load.ts";
export { type FleetKey, fleetKeys, type KeyFlag, shownDefault } from "./keys.ts";
export { type CommonOptions, commonOptions, type Override, type Role, ROLES } from "./options.ts";
export { renderedBy } from "./rendered_by.ts";
export { checkSecretFiles, openTo, readReportToken, secretFileProblem } from "./secrets.ts";
