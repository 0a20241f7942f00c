#!/usr/bin/env node
// Thin launcher: the CLI lives in dist/ (built by `npm run build`).
import('../dist/main.js').then((m) => m.main(process.argv.slice(2)));
