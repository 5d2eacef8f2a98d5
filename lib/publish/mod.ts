/**
 * Publishing a git commit to the primary: resolving the ref, exporting the
 * tree, the rsync to the primary (of the paths git says changed, when the
 * primary holds the last version published from here; of the whole tree
 * otherwise), the marker and the version log.
 *
 * @module
 */

export { describePublish, publish } from "./publish.ts";
export { checkPublisher } from "./publisher.ts";
