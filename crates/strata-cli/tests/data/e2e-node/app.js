// Prints a value computed by the dependency npm ci installed.
const ms = require("ms");
console.log("node ok " + ms("2 days"));
