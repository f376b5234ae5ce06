// The tests' cut links: the relay lives beside the cluster launcher, where the chaos runner uses it too.
export { FaultyLink } from '../../ts/dev/faulty-link.js';
