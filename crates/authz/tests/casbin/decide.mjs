// Decides a batch of (subject, object, action) requests with node-casbin and the model text of
// the Backstage RBAC plugin. Input: a JSON file {policies, groupings, queries}; output: a JSON
// array of booleans on stdout.
import { readFileSync } from 'node:fs';
import { newEnforcer, newModelFromString } from 'casbin';

const MODEL = `
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[role_definition]
g = _, _

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
`;

const input = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const enforcer = await newEnforcer(newModelFromString(MODEL));
if (input.policies.length) await enforcer.addPolicies(input.policies);
if (input.groupings.length) await enforcer.addGroupingPolicies(input.groupings);
const results = [];
for (const [sub, obj, act] of input.queries) {
  results.push(enforcer.enforceSync(sub, obj, act));
}
process.stdout.write(JSON.stringify(results));
