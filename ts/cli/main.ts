// `quark`: one binary for every process kind (api, orc, compute), the local cluster (up, down,
// status), operator views and the user's commands. The commands live in ./program.ts.
import { run } from './program.js';

await run(process.argv.slice(2));
