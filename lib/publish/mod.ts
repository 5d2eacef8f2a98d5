/**
 * Publishing a git commit to the primary: resolving the ref, exporting the
 * tree, the rsync to the primary, the marker and the version log.
 *
 * @module
 */

export { checkPublisher, describePublish, publish } from "./publish.ts";
