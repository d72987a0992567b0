// Bundles the dashboard (dashboard/src → dashboard/dist): one ES module with the
// client inside, the page and its stylesheet. Type checking is tsc's job
// (dashboard/tsconfig.json); esbuild only strips types and bundles.
import { copyFile, mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(root, "dashboard", "src");
const out = join(root, "dashboard", "dist");

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(source, "main.ts")],
  outfile: join(out, "app.js"),
  bundle: true,
  format: "esm",
  target: ["es2022"],
  platform: "browser",
  sourcemap: true,
  legalComments: "none",
  logLevel: "warning",
});
await copyFile(join(source, "style.css"), join(out, "style.css"));
// Last, so its time stamp tells make the build is complete.
await copyFile(join(source, "index.html"), join(out, "index.html"));
