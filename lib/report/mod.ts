/**
 * A client's report to the fleet view: what it sends, the signed request,
 * and the token.
 *
 * @module
 */

export { type ClientReport, parseClientReport, REPORT_HOST, sendReport } from "./report.ts";
export {
  hostToken,
  parseSignature,
  type Signature,
  SIGNATURE_HEADER,
  signReport,
  verifySignature,
} from "./sign.ts";
