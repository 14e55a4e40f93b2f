WITH picked AS
(SELECT deliveries.id AS id, NOT (EXISTS (SELECT *
FROM suppressions
WHERE suppressions.email = deliveries.email)) AND (EXISTS (SELECT *
FROM subscriptions
WHERE subscriptions.member_id = deliveries.member_id AND subscriptions.list_id = ANY (%(list_ids)s::INTEGER[]) AND subscriptions.status = %(status_1)s::VARCHAR)) AS ok
FROM deliveries
WHERE deliveries.campaign_id = %(campaign_id_1)s::INTEGER AND deliveries.batch_no = %(batch_no_1)s::INTEGER AND deliveries.status = %(status_2)s::VARCHAR AND (EXISTS (SELECT *
FROM campaigns
WHERE campaigns.id = %(id_1)s::INTEGER AND campaigns.status = %(status_3)s::VARCHAR)) ORDER BY deliveries.id
 LIMIT %(param_6)s::INTEGER FOR UPDATE OF deliveries SKIP LOCKED)
 UPDATE deliveries SET status=CASE WHEN picked.ok THEN %(param_1)s::VARCHAR ELSE %(param_2)s::VARCHAR END, attempts=(deliveries.attempts + CASE WHEN picked.ok THEN %(param_3)s::INTEGER ELSE %(param_4)s::INTEGER END), error=CASE WHEN picked.ok THEN NULL ELSE %(param_5)s::VARCHAR END, updated_at=%(updated_at)s::TIMESTAMP WITH TIME ZONE FROM picked, members WHERE deliveries.id = picked.id AND members.id = deliveries.member_id RETURNING picked.ok, deliveries.id, deliveries.email, deliveries.language, members.first_name, members.last_name, members.local, members.language AS language_1, members.postal_code, members.attributes;
