/**
 * HTTP as a client speaks it: a bounded POST (a client's report) and GET
 * (the version a client's server announces), bounded reads of response
 * bodies (a server's /status), and one wording for a
 * failed request. Nothing here serves: the endpoint is lib/health's, so a
 * cron client never loads the server's HTTP stack.
 *
 * @module
 */

export { MAX_STATUS_BODY, readLimited } from "./bounded_body.ts";
export { fetchFailure } from "./fetch_error.ts";
export { getOnce, postOnce } from "./http_once.ts";
