// The lab needs Node.js 22.19 or newer (mailauth 7, dns2 3, and .ts files run
// as they are). Every npm script loads this first (node -r, which every Node
// has, or on its own before a command that is not Node's), so that an older
// Node says so in one line instead of failing with a stack trace: before
// 22.18 it cannot even load a .ts file. Plain CommonJS for the same reason.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  process.stderr.write(`Node.js ${process.versions.node} is too old: the lab needs 22.19 or newer\n`);
  process.exit(1);
}
