// Amplify v6, unchanged, against cloud-ws local's GraphQL API through the TLS front.
//
// Environment: OUTPUTS (the outputs file), ENDPOINT (the front's https://…/graphql), DEPLOYMENT_ID,
// USERNAME and PASSWORD (a user of the stack's pool). Prints one JSON line once subscribed ({"subscribed": true}), then
// waits for three events (the test emits them through the plugin) and prints {"received": [seq...], "deployment": ...}.
import fs from 'node:fs';
import WebSocket from 'ws';

// Node 20 has no global WebSocket; Amplify's real-time provider needs one.
globalThis.WebSocket = WebSocket;
const { Amplify } = await import('aws-amplify');
const { Hub } = await import('aws-amplify/utils');
const { generateClient, CONNECTION_STATE_CHANGE, ConnectionState } = await import('aws-amplify/api');
const { signIn } = await import('aws-amplify/auth');

const outputs = JSON.parse(fs.readFileSync(process.env.OUTPUTS, 'utf8'));
const deploymentId = process.env.DEPLOYMENT_ID;

Amplify.configure({
  Auth: {
    Cognito: {
      userPoolId: outputs.user_pool_id,
      userPoolClientId: outputs.user_pool_client_id,
      // The embedded Cognito; omit in the cloud.
      userPoolEndpoint: outputs.aws_endpoint_url,
    },
  },
  API: { GraphQL: { endpoint: process.env.ENDPOINT, region: outputs.region, defaultAuthMode: 'userPool' } },
});
await signIn({
  username: process.env.USERNAME,
  password: process.env.PASSWORD,
  options: { authFlowType: 'USER_PASSWORD_AUTH' },
});

const client = generateClient();
const received = [];
const connected = new Promise((resolve) => {
  Hub.listen('api', ({ payload }) => {
    if (payload.event === CONNECTION_STATE_CHANGE && payload.data.connectionState === ConnectionState.Connected) {
      resolve();
    }
  });
});
const done = new Promise((resolve, reject) => {
  client
    .graphql({
      query: 'subscription($d: ID!) { onDeploymentEvent(deployment_id: $d) { deployment_id seq type data } }',
      variables: { d: deploymentId },
    })
    .subscribe({
      next: ({ data }) => {
        received.push(data.onDeploymentEvent.seq);
        if (received.length === 3) resolve();
      },
      error: reject,
    });
});
await connected;
console.log(JSON.stringify({ subscribed: true }));
await Promise.race([done, new Promise((_, reject) => setTimeout(() => reject(new Error('no events within 20 s')), 20000))]);
const state = await client.graphql({
  query: 'query($d: ID!) { deploymentEvents(deployment_id: $d, since: 1) { seq } }',
  variables: { d: deploymentId },
});
console.log(JSON.stringify({ received, history: state.data.deploymentEvents.map((event) => event.seq) }));
process.exit(0);
