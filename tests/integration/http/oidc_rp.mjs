// An OpenID Certified relying party (openid-client) against a live identity server:
// discovery, the code flow with PKCE, userinfo and refresh. Prints one JSON line.
import * as client from "openid-client";

const env = process.env;
const config = await client.discovery(
  new URL(env.ISSUER),
  env.CLIENT_ID,
  env.CLIENT_SECRET,
  client.ClientSecretBasic(env.CLIENT_SECRET), // as the client registered
  { execute: [client.allowInsecureRequests] },
);
const verifier = client.randomPKCECodeVerifier();
const nonce = client.randomNonce();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: env.REDIRECT_URI,
  scope: "openid email profile offline_access",
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: "S256",
  nonce,
  state,
});
// The browser: already signed in (its session cookie), follows no redirect.
const answer = await fetch(url, { redirect: "manual", headers: { cookie: env.BROWSER_COOKIE } });
const location = answer.headers.get("location");
if (answer.status !== 302 || !location) throw new Error(`authorize answered ${answer.status}`);
const tokens = await client.authorizationCodeGrant(config, new URL(location), {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
console.log(JSON.stringify({
  issuer: config.serverMetadata().issuer,
  sub: claims.sub,
  aud: claims.aud,
  azp: claims.azp,
  nonce_ok: claims.nonce === nonce,
  at_hash: claims.at_hash,
  userinfo,
  refreshed: Boolean(refreshed.access_token),
  rotated: refreshed.refresh_token !== tokens.refresh_token,
}));
